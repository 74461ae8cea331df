#!/usr/bin/env python3
"""Differential testing of Sluice against onnxruntime.

Generates random valid ONNX graphs from ops Sluice supports, built around the patterns the
executor fuses (Conv[+BatchNormalization][+activation], Gemm + activation, MatMul + Add
[+activation or the five-node exact Gelu], Transpose + MatMul [+ Mul/Div by a scalar],
Add + LayerNormalization, Gelu alone) with no-op ops between and around them (Cast to the same
type, Identity, Reshape to the same shape, Unsqueeze + Squeeze, Flatten, Dropout), fan-out (a
value read by several nodes, and by a graph output while also read later), residual branches,
shared inputs, initializers and Constant nodes, broadcasting shapes, int64 and bool chains, and a
symbolic batch dimension run at batch sizes 1, 3 and 8. onnxruntime computes the expected outputs.

Every case is two files: NAME.onnx (the model) and NAME.pb, a serialized onnx GraphProto whose
initializers are the test data, named `in/BATCH/INPUT` and `out/BATCH/OUTPUT`.

Modes:
  generate  --seed S --count C --out DIR     cases S .. S+C-1 (deterministic per seed)
  process   --seed S --count C --sluice BIN  run single-input cases through `sluice infer` and
                                             `sluice run` (one stage, and 2-3 stages at a random
                                             split) and compare with onnxruntime
  shrink    CASE.onnx --out DIR [--oracle swift|process]
                                             reduce a mismatching case to a small graph that
                                             still mismatches and save it as a regression fixture
The in-process comparison (whole graph, node by node, random stage splits, every kernel level)
is Tests/SluiceONNXTests/DifferentialTests.swift; point it at generated cases with
SLUICE_DIFFTEST_DIR=DIR (see docs/testing.md).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
BATCHES = (1, 3, 8)
FLOAT, INT64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
DOUBLE, INT32, FLOAT16 = TensorProto.DOUBLE, TensorProto.INT32, TensorProto.FLOAT16
# Values beyond this many elements per batch row are not built (keeps a case a few thousand elements).
MAX_ROW = 768


class Value:
    """A tensor in the graph being built. shape[0] is None for the symbolic batch dimension."""

    def __init__(self, name, dtype, shape, exact):
        self.name, self.dtype, self.shape, self.exact = name, dtype, tuple(shape), exact

    @property
    def batched(self):
        return len(self.shape) > 0 and self.shape[0] is None

    @property
    def row(self):
        return int(np.prod([d for d in self.shape if d is not None], dtype=np.int64))


class Builder:
    def __init__(self, rng):
        self.rng = rng
        self.nodes, self.inits, self.inputs = [], [], []
        self.pool = []
        self.tags = set()
        self.counter = 0

    # ---- basics -----------------------------------------------------------------------------
    def fresh(self, stem):
        self.counter += 1
        return f"{stem}{self.counter}"

    def chance(self, p):
        return self.rng.random() < p

    def pick(self, items):
        return items[int(self.rng.integers(len(items)))]

    def node(self, op, inputs, outputs=None, **attrs):
        outputs = outputs or [self.fresh(op.lower() + "_")]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=f"n{len(self.nodes)}_{op}", **attrs))
        return outputs if len(outputs) > 1 else outputs[0]

    def const(self, array, stem="c", as_node=None):
        """A constant: an initializer, or (sometimes) a Constant node."""
        name = self.fresh(stem)
        tensor = numpy_helper.from_array(np.asarray(array), name)
        if as_node is None:
            as_node = self.chance(0.15)
        if as_node:
            self.nodes.append(helper.make_node("Constant", [], [name], name=f"n{len(self.nodes)}_Constant", value=tensor))
            self.tags.add("constant-node")
        else:
            self.inits.append(tensor)
        return name

    def init(self, array, stem="w"):
        """An initializer (fusions need their weights as initializers)."""
        return self.const(array, stem, as_node=False)

    def weights(self, shape, scale=None):
        fan = shape[0] if len(shape) else 1
        scale = scale if scale is not None else 1.0 / np.sqrt(max(fan, 1))
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    def add(self, name, dtype, shape, exact=False):
        v = Value(name, dtype, shape, exact)
        self.pool.append(v)
        return v

    def floats(self, batched=True, min_rank=1, max_rank=4):
        c = [v for v in self.pool if v.dtype == FLOAT and v.batched == batched and min_rank <= len(v.shape) <= max_rank]
        return c

    def recent(self, candidates):
        """Mostly the newest value (a chain), sometimes an older one (fan-out, residual)."""
        if not candidates:
            return None
        if self.chance(0.6):
            return candidates[-1]
        return self.pick(candidates)

    # ---- no-op chains -----------------------------------------------------------------------
    def noop(self, v, force=False):
        """Zero to three ops that return their input unchanged (the aliasing hazards)."""
        steps = int(self.rng.integers(1, 4)) if force or self.chance(0.45) else 0
        for _ in range(steps):
            kind = self.pick(["cast", "identity", "reshape", "unsqueeze", "flatten", "dropout", "reshape-neg"])
            if kind == "cast":
                out = self.node("Cast", [v.name], to=v.dtype)
            elif kind == "identity":
                out = self.node("Identity", [v.name])
            elif kind == "dropout" and v.dtype == FLOAT:
                out = self.node("Dropout", [v.name])
            elif kind == "reshape" and v.batched:
                target = [0] + list(v.shape[1:])
                out = self.node("Reshape", [v.name, self.const(np.array(target, np.int64), "shape")])
            elif kind == "reshape-neg" and v.batched and len(v.shape) >= 2:
                target = [-1] + list(v.shape[1:])
                out = self.node("Reshape", [v.name, self.const(np.array(target, np.int64), "shape")])
            elif kind == "unsqueeze":
                axis = int(self.rng.integers(1, len(v.shape) + 1)) if v.batched else 0
                mid = self.node("Unsqueeze", [v.name, self.const(np.array([axis], np.int64), "axes")])
                out = self.node("Squeeze", [mid, self.const(np.array([axis], np.int64), "axes")])
            elif kind == "flatten" and v.batched and len(v.shape) == 2:
                out = self.node("Flatten", [v.name], axis=1)
            else:
                out = self.node("Identity", [v.name])
            self.tags.add("noop")
            v = self.add(out, v.dtype, v.shape, v.exact)
        return v

    # ---- shapes -------------------------------------------------------------------------------
    def partner_shape(self, shape):
        """A shape that broadcasts against `shape` (batched) to exactly `shape`."""
        rest = list(shape[1:])
        kind = self.pick(["full", "one", "suffix", "ones", "scalar"])
        if kind == "full":
            return [1] + rest
        if kind == "one":
            s = [1] + rest
            if len(s) > 1:
                s[int(self.rng.integers(1, len(s)))] = 1
            return s
        if kind == "suffix":
            k = int(self.rng.integers(0, len(rest) + 1))
            return rest[len(rest) - k:]
        if kind == "ones":
            return [1] * len(shape)
        return []

    # ---- blocks -------------------------------------------------------------------------------
    def activation(self, x_name, shape, allow_gelu=True):
        """An activation node the executor fuses, or the five-node Gelu."""
        kind = self.pick(["Relu", "Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "gelu" if allow_gelu else "Relu"])
        if kind == "gelu":
            return self.gelu(x_name), False
        if kind == "LeakyRelu":
            return self.node("LeakyRelu", [x_name], alpha=float(self.pick([0.01, 0.1, 0.3]))), False
        if kind == "Clip":
            lo = self.init(np.array(-0.5, np.float32), "lo")
            hi = self.init(np.array(0.75, np.float32), "hi")
            return self.node("Clip", [x_name, lo, hi]), False
        return self.node(kind, [x_name]), kind == "Relu"

    def gelu(self, x):
        """Exact Gelu as exporters write it: Div by √2 (or Mul by 1/√2), Erf, Add 1, Mul x, Mul ½."""
        self.tags.add("gelu")
        if self.chance(0.5):
            s = self.node("Div", [x, self.init(np.array(1.4142135, np.float32), "sqrt2")])
        else:
            s = self.node("Mul", [x, self.init(np.array(0.70710677, np.float32), "rsqrt2")])
        e = self.node("Erf", [s])
        one = self.init(np.array(1.0, np.float32), "one")
        a = self.node("Add", [e, one] if self.chance(0.5) else [one, e])
        half = self.init(np.array(0.5, np.float32), "half")
        if self.chance(0.5):
            m = self.node("Mul", [a, x] if self.chance(0.5) else [x, a])
            return self.node("Mul", [m, half] if self.chance(0.5) else [half, m])
        m = self.node("Mul", [a, half] if self.chance(0.5) else [half, a])
        return self.node("Mul", [m, x] if self.chance(0.5) else [x, m])

    def b_matmul(self):
        x = self.recent(self.floats(min_rank=2))
        if x is None:
            return
        x = self.noop(x)
        k = x.shape[-1]
        m = int(self.pick([4, 8, 12, 16, 32]))
        if self.chance(0.15) and k < 256 and x.row // k * 256 <= 4 * MAX_ROW:
            # Deep enough for the packed kernel: widen x first.
            w0 = self.init(self.weights([k, 256]), "wide")
            x = self.add(self.node("MatMul", [x.name, w0]), FLOAT, x.shape[:-1] + (256,))
            k = 256
            self.tags.add("packed")
        if x.row // k * m > MAX_ROW:
            return
        w = self.init(self.weights([k, m]))
        y = self.node("MatMul", [x.name, w])
        self.tags.add("matmul")
        if self.chance(0.8):
            b = self.init(self.weights([m] if self.chance(0.7) else [1, m], 0.3), "b")
            y = self.node("Add", [y, b] if self.chance(0.7) else [b, y])
            self.tags.add("matmul-add")
            if self.chance(0.7):
                y, _ = self.activation(y, x.shape[:-1] + (m,))
        self.add(y, FLOAT, x.shape[:-1] + (m,))

    def b_gemm(self):
        x = self.recent(self.floats(min_rank=2))
        if x is None:
            return
        x = self.noop(x)
        if len(x.shape) > 2:
            x = self.add(self.node("Flatten", [x.name], axis=1), FLOAT, (None, x.row), x.exact)
        k, m = x.shape[1], int(self.pick([4, 8, 16, 24]))
        if k > 512:
            return
        trans_b = int(self.chance(0.5))
        w = self.init(self.weights([m, k] if trans_b else [k, m]))
        inputs = [x.name, w]
        attrs = {"transB": trans_b}
        if self.chance(0.7):
            inputs.append(self.init(self.weights([m] if self.chance(0.7) else [1, m], 0.3), "c"))
            if self.chance(0.3):
                attrs["beta"] = 0.5
        if self.chance(0.2):
            attrs["alpha"] = 0.75
        y = self.node("Gemm", inputs, **attrs)
        self.tags.add("gemm")
        if self.chance(0.7):
            y, _ = self.activation(y, (None, m))
        self.add(y, FLOAT, (None, m))

    def b_conv(self):
        x = self.recent(self.floats(min_rank=2))
        if x is None:
            return
        x = self.noop(x)
        if len(x.shape) == 2 or len(x.shape) > 4:
            f = x.row
            c = next(d for d in (4, 3, 2, 1) if f % d == 0 and f // d >= 3) if f >= 3 else None
            if c is None:
                return
            x = self.add(self.node("Reshape", [x.name, self.const(np.array([0, c, f // c], np.int64), "shape")]),
                         FLOAT, (None, c, f // c), x.exact)
        spatial = list(x.shape[2:])
        c = x.shape[1]
        group = 1
        m = int(self.pick([2, 4, 6, 8]))
        if c > 1 and self.chance(0.2):
            group = c if c <= 8 else 1
            m = group * int(self.pick([1, 2]))
        kernel = [int(self.pick([1, 2, 3])) for _ in spatial]
        kernel = [min(k, s) for k, s in zip(kernel, spatial)]
        strides = [int(self.pick([1, 1, 2])) for _ in spatial]
        dil = [1 if k == 1 or s < 2 * k else int(self.pick([1, 1, 2])) for k, s in zip(kernel, spatial)]
        pads = [int(self.rng.integers(0, k)) for k in kernel] * 2
        out = [(s + pads[i] + pads[i + len(spatial)] - dil[i] * (kernel[i] - 1) - 1) // strides[i] + 1
               for i, s in enumerate(spatial)]
        if min(out) < 1 or m * int(np.prod(out)) > MAX_ROW:
            return
        w = self.init(self.weights([m, c // group] + kernel, 1.0 / np.sqrt(c // group * int(np.prod(kernel)))))
        inputs = [x.name, w]
        if self.chance(0.7):
            inputs.append(self.init(self.weights([m], 0.3), "b"))
        y = self.node("Conv", inputs, kernel_shape=kernel, strides=strides, pads=pads, dilations=dil, group=group)
        self.tags.add("conv")
        if self.chance(0.5):
            scale = self.init((1 + 0.3 * self.rng.standard_normal(m)).astype(np.float32), "bn_s")
            bias = self.init(self.weights([m], 0.3), "bn_b")
            mean = self.init(self.weights([m], 0.3), "bn_m")
            var = self.init((0.5 + self.rng.random(m)).astype(np.float32), "bn_v")
            y = self.node("BatchNormalization", [y, scale, bias, mean, var], epsilon=1e-5)
            self.tags.add("batchnorm")
        if self.chance(0.6):
            y, _ = self.activation(y, None, allow_gelu=False)
        self.add(y, FLOAT, (None, m) + tuple(out))

    def b_transposed_matmul(self):
        c = self.floats(min_rank=3)
        if not c:
            x = self.recent(self.floats(min_rank=2))
            if x is None or x.row < 4:
                return
            f = x.row
            d = next((d for d in (8, 6, 4, 3, 2) if f % d == 0 and f // d >= 2), None)
            if d is None:
                return
            x = self.add(self.node("Reshape", [x.name, self.const(np.array([0, f // d, d], np.int64), "shape")]),
                         FLOAT, (None, f // d, d), x.exact)
        else:
            x = self.recent(c)
        s, d = x.shape[-2], x.shape[-1]
        if x.row // d * s > MAX_ROW:
            return
        q = x
        if self.chance(0.5):
            q = self.add(self.node("MatMul", [x.name, self.init(self.weights([d, d]))]), FLOAT, x.shape)
        same = [v for v in self.floats(min_rank=len(x.shape), max_rank=len(x.shape)) if v.shape == x.shape]
        k = self.pick(same) if same and self.chance(0.6) else x
        if k is q:
            self.tags.add("shared-input")
        k = self.noop(k)
        perm = list(range(len(x.shape) - 2)) + [len(x.shape) - 1, len(x.shape) - 2]
        kt = self.node("Transpose", [k.name], perm=perm)
        y = self.node("MatMul", [q.name, kt])
        self.tags.add("transpose-matmul")
        if self.chance(0.6):
            sc = self.init(np.array(self.pick([0.5, 0.125, 2.0]), np.float32).reshape([] if self.chance(0.5) else [1]), "scale")
            y = self.node(self.pick(["Mul", "Div"]), [y, sc])
        self.add(y, FLOAT, x.shape[:-1] + (s,))

    def b_add_layernorm(self):
        x = self.recent(self.floats(min_rank=2))
        if x is None:
            return
        kind = self.pick(["same", "one", "rest", "value", "partner", "both"])
        out_shape = x.shape
        if kind == "both" and len(x.shape) >= 3 and x.shape[1] > 1:
            # Both operands broadcast: [N, 1, …] + [T, …] → [N, T, …].
            small = self.node("ReduceMean", [x.name], axes=[1], keepdims=1)
            y = self.init(self.weights(list(x.shape[1:]), 0.5), "res")
            x = Value(small, FLOAT, (None, 1) + x.shape[2:], False)
            self.tags.add("broadcast-residual")
        elif kind in ("partner", "both"):
            y = self.init(np.asarray(self.weights(self.partner_shape(x.shape), 0.5)), "res")
            self.tags.add("broadcast-residual")
        elif kind == "value":
            same = [v for v in self.floats() if v.shape == x.shape and v is not x]
            y = self.pick(same).name if same else x.name
            self.tags.add("residual")
        elif kind == "same":
            y = x.name
            self.tags.add("shared-input")
        else:
            shape = [1] + list(x.shape[1:]) if kind == "one" else list(x.shape[1:])
            y = self.init(self.weights(shape, 0.5), "res")
            self.tags.add("broadcast-residual")
        s = self.node("Add", [x.name, y] if self.chance(0.7) else [y, x.name])
        axis = -1 if len(out_shape) == 2 or self.chance(0.7) else -2
        dims = list(out_shape[axis:])
        inputs = [s, self.init((1 + 0.2 * self.rng.standard_normal(dims)).astype(np.float32), "ln_s")]
        if self.chance(0.7):
            inputs.append(self.init(self.weights(dims, 0.2), "ln_b"))
        if int(np.prod(dims)) < 2:
            return
        out = self.node("LayerNormalization", inputs, axis=axis, epsilon=1e-5)
        self.tags.add("add-layernorm")
        self.add(out, FLOAT, out_shape)

    def b_gelu(self):
        x = self.recent(self.floats())
        if x is None:
            return
        x = self.noop(x)
        self.add(self.gelu(x.name), FLOAT, x.shape)

    def b_unary(self):
        x = self.recent(self.floats())
        if x is None:
            return
        op = self.pick(["Relu", "Relu", "Abs", "Neg", "Sigmoid", "Tanh", "Erf", "Softplus", "Elu", "Softsign",
                        "HardSigmoid", "Sin", "Cos", "Exp", "Floor", "Sqrt", "LeakyRelu"])
        exact_ops = {"Relu", "Abs", "Neg", "Floor"}
        if op in ("Floor",) and not x.exact:
            op = "Abs"
        name = x.name
        if op == "Exp":
            name = self.node("Tanh", [name])
        if op == "Sqrt":
            # Away from 0, where √ turns a one-ulp difference (Erf saturating to −1 or not) into 10⁻⁴.
            name = self.node("Add", [self.node("Abs", [name]), self.init(np.array(0.25, np.float32), "quarter")])
        y = self.node(op, [name])
        self.tags.add("unary")
        self.add(y, FLOAT, x.shape, x.exact and op in exact_ops)

    def b_binary(self):
        x = self.recent(self.floats())
        if x is None:
            return
        op = self.pick(["Add", "Add", "Sub", "Mul", "Mul", "Div", "Max", "Min"])
        kind = self.pick(["const", "const", "value", "self"])
        if kind == "value":
            same = [v for v in self.floats() if v.shape == x.shape and v is not x]
            if not same:
                kind = "const"
            else:
                y = self.pick(same)
                if op == "Div":
                    d = self.node("Abs", [y.name])
                    yname = self.node("Add", [d, self.init(np.array(1.0, np.float32), "one")])
                else:
                    yname = y.name
                self.tags.add("residual")
                exact = False
        if kind == "self":
            yname = x.name
            if op == "Div":
                op = "Mul"
            self.tags.add("shared-input")
            exact = x.exact and op in ("Max", "Min")
        if kind == "const":
            shape = self.partner_shape(x.shape)
            c = np.asarray(self.weights(shape, 1.0))
            if op == "Div":
                c = np.asarray(np.sign(c) * (0.5 + np.abs(c)))
                c[c == 0] = 1
            yname = self.const(c.astype(np.float32), "k")
            self.tags.add("broadcast")
            exact = x.exact and op in ("Max", "Min")
        args = [x.name, yname] if self.chance(0.75) or op in ("Div", "Sub") else [yname, x.name]
        self.add(self.node(op, args), FLOAT, x.shape, exact)

    def b_softmax(self):
        x = self.recent(self.floats(min_rank=2))
        if x is None:
            return
        axis = int(self.rng.integers(1, len(x.shape))) if self.chance(0.4) else -1
        self.add(self.node(self.pick(["Softmax", "Softmax", "LogSoftmax"]), [x.name], axis=axis), FLOAT, x.shape)
        self.tags.add("softmax")

    def b_reduce(self):
        x = self.recent(self.floats(min_rank=2))
        if x is None:
            return
        axis = int(self.rng.integers(1, len(x.shape)))
        keep = int(self.chance(0.5))
        op = self.pick(["ReduceMean", "ReduceSum", "ReduceMax"])
        if op == "ReduceSum":
            y = self.node(op, [x.name, self.const(np.array([axis], np.int64), "axes")], keepdims=keep)
        else:
            y = self.node(op, [x.name], axes=[axis], keepdims=keep)
        shape = list(x.shape)
        if keep:
            shape[axis] = 1
        else:
            del shape[axis]
        self.tags.add("reduce")
        self.add(y, FLOAT, shape, x.exact and op == "ReduceMax")

    def b_layout(self):
        x = self.recent(self.floats(min_rank=2))
        if x is None:
            return
        kind = self.pick(["transpose", "reshape", "slice", "concat", "split", "shape-reshape", "expand"])
        rank = len(x.shape)
        if kind == "transpose" and rank >= 3:
            rest = list(range(1, rank))
            self.rng.shuffle(rest)
            perm = [0] + rest
            self.add(self.node("Transpose", [x.name], perm=perm), FLOAT, [x.shape[p] for p in perm], x.exact)
        elif kind == "reshape":
            f = x.row
            divs = [d for d in range(2, min(f, 16) + 1) if f % d == 0]
            if not divs:
                return
            d = self.pick(divs)
            target = [0, f // d, d] if self.chance(0.5) else [-1, d, f // d]
            shape = (None, target[1], target[2])
            self.add(self.node("Reshape", [x.name, self.const(np.array(target, np.int64), "shape")]), FLOAT, shape, x.exact)
        elif kind == "shape-reshape":
            # The Shape → Gather → Unsqueeze → Concat → Reshape chain exporters write.
            shp = self.node("Shape", [x.name])
            n = self.node("Gather", [shp, self.const(np.array(0, np.int64), "idx")], axis=0)
            n1 = self.node("Unsqueeze", [n, self.const(np.array([0], np.int64), "axes")])
            tgt = self.node("Concat", [n1, self.const(np.array([-1], np.int64), "minus1")], axis=0)
            self.add(self.node("Reshape", [x.name, tgt]), FLOAT, (None, x.row), x.exact)
            self.tags.add("shape-chain")
        elif kind == "slice":
            axis = int(self.rng.integers(1, rank))
            d = x.shape[axis]
            if d < 2:
                return
            start = int(self.rng.integers(0, d - 1))
            end = int(self.rng.integers(start + 1, d + 1))
            inputs = [x.name, self.const(np.array([start], np.int64), "st"), self.const(np.array([end], np.int64), "en"),
                      self.const(np.array([axis], np.int64), "ax")]
            shape = list(x.shape)
            shape[axis] = end - start
            self.add(self.node("Slice", inputs), FLOAT, shape, x.exact)
        elif kind == "concat":
            axis = int(self.rng.integers(1, rank))
            others = [v for v in self.floats(min_rank=rank, max_rank=rank)
                      if all(a == b for i, (a, b) in enumerate(zip(v.shape, x.shape)) if i != axis)]
            y = self.pick(others)
            if y is x:
                self.tags.add("shared-input")
            shape = list(x.shape)
            shape[axis] = x.shape[axis] + y.shape[axis]
            if x.row // x.shape[axis] * shape[axis] > MAX_ROW:
                return
            self.add(self.node("Concat", [x.name, y.name], axis=axis), FLOAT, shape, x.exact and y.exact)
        elif kind == "split":
            axis = int(self.rng.integers(1, rank))
            d = x.shape[axis]
            if d < 2:
                return
            a = int(self.rng.integers(1, d))
            outs = [self.fresh("split_"), self.fresh("split_")]
            self.node("Split", [x.name, self.const(np.array([a, d - a], np.int64), "sp")], outs, axis=axis)
            for o, size in zip(outs, (a, d - a)):
                shape = list(x.shape)
                shape[axis] = size
                self.add(o, FLOAT, shape, x.exact)
        elif kind == "expand":
            shape = [1] + list(x.shape[1:])
            self.add(self.node("Expand", [x.name, self.const(np.array(shape, np.int64), "shape")]), FLOAT, x.shape, x.exact)

    def b_logic(self):
        """Comparisons, Where and int64 arithmetic, only on values both sides compute exactly."""
        exact = [v for v in self.floats() if v.exact]
        if not exact:
            return
        x = self.recent(exact)
        kind = self.pick(["where", "int", "argmax", "wide"])
        if kind == "where":
            b = self.node(self.pick(["Greater", "Less", "GreaterOrEqual"]), [x.name, self.const(np.array(0.1, np.float32), "thr")])
            if self.chance(0.4):
                b = self.node("Not", [b])
            if self.chance(0.3):
                b2 = self.node("Less", [x.name, self.const(np.array(0.8, np.float32), "thr")])
                b = self.node(self.pick(["And", "Or", "Xor"]), [b, b2])
            bv = self.add(b, BOOL, x.shape, True)
            self.noop(bv)
            others = [v for v in self.floats() if v.shape == x.shape]
            y = self.pick(others)
            self.add(self.node("Where", [bv.name, x.name, y.name]), FLOAT, x.shape, x.exact and y.exact)
            if self.chance(0.5):
                self.add(self.node("Cast", [bv.name], to=FLOAT), FLOAT, x.shape, True)
            self.tags.add("bool")
        elif kind == "int":
            scaled = self.node("Mul", [x.name, self.const(np.array(4.0, np.float32), "four")])
            i = self.add(self.node("Cast", [scaled], to=INT64), INT64, x.shape, True)
            i = self.noop(i)
            op = self.pick(["Add", "Mul", "Sub", "Max"])
            c = self.const(self.rng.integers(-3, 4, size=self.partner_shape(x.shape)).astype(np.int64), "ik")
            j = self.add(self.node(op, [i.name, c]), INT64, x.shape, True)
            self.add(self.node("Cast", [j.name], to=FLOAT), FLOAT, x.shape, True)
            self.tags.add("int64")
        elif kind == "wide":
            # Other dtypes on exact values, where both runtimes must agree bit for bit: float64
            # arithmetic, int32 arithmetic, and the float16 round trip (round to nearest even).
            dtype = self.pick([DOUBLE, INT32, FLOAT16])
            if dtype == DOUBLE:
                d = self.add(self.node("Cast", [x.name], to=DOUBLE), DOUBLE, x.shape, True)
                d = self.noop(d)
                c = self.const(np.asarray(self.weights(self.partner_shape(x.shape), 1.0)).astype(np.float64), "dk")
                m = self.node("Mul", [d.name, c])
                y = self.node(self.pick(["Add", "Sub", "Max"]), [m, d.name])
                self.tags.add("float64")
            elif dtype == INT32:
                scaled = self.node("Mul", [x.name, self.const(np.array(4.0, np.float32), "four")])
                i = self.add(self.node("Cast", [scaled], to=INT32), INT32, x.shape, True)
                i = self.noop(i)
                c = self.const(self.rng.integers(-5, 6, size=self.partner_shape(x.shape)).astype(np.int32), "ik")
                y = self.node(self.pick(["Add", "Mul", "Min"]), [i.name, c])
                self.tags.add("int32")
            else:
                h = self.add(self.node("Cast", [x.name], to=FLOAT16), FLOAT16, x.shape, True)
                y = self.noop(h).name
                self.tags.add("float16")
            self.add(self.node("Cast", [y], to=FLOAT), FLOAT, x.shape, True)
        else:
            if len(x.shape) < 2:
                return
            axis = int(self.rng.integers(1, len(x.shape)))
            shape = list(x.shape)
            shape[axis] = 1
            a = self.add(self.node("ArgMax", [x.name], axis=axis, keepdims=1), INT64, shape, True)
            self.add(self.node("Cast", [a.name], to=FLOAT), FLOAT, shape, True)
            self.tags.add("int64")

    def b_pool(self):
        c = [v for v in self.floats(min_rank=3, max_rank=4)]
        x = self.recent(c)
        if x is None:
            return
        spatial = list(x.shape[2:])
        kind = self.pick(["MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"])
        if kind.startswith("Global"):
            self.add(self.node(kind, [x.name]), FLOAT, x.shape[:2] + (1,) * len(spatial), x.exact and kind == "GlobalMaxPool")
        else:
            kernel = [min(2, s) for s in spatial]
            out = [s - k + 1 for s, k in zip(spatial, kernel)]
            self.add(self.node(kind, [x.name], kernel_shape=kernel), FLOAT, x.shape[:2] + tuple(out), x.exact and kind == "MaxPool")
        self.tags.add("pool")

    def b_embedding(self):
        """Gather from an embedding table by an int64 graph input (in-process cases only)."""
        vocab, dim, steps = int(self.pick([5, 10, 17])), int(self.pick([4, 8])), int(self.pick([3, 6]))
        ids = self.fresh("ids")
        self.inputs.append((ids, INT64, (None, steps), vocab))
        table = self.init(self.weights([vocab, dim], 1.0), "emb")
        self.add(self.node("Gather", [table, ids], axis=0), FLOAT, (None, steps, dim), True)
        self.tags.add("gather")


BLOCKS = [("b_matmul", 4), ("b_gemm", 2), ("b_conv", 2), ("b_transposed_matmul", 2), ("b_add_layernorm", 3),
          ("b_gelu", 1), ("b_unary", 2), ("b_binary", 3), ("b_softmax", 1), ("b_reduce", 1), ("b_layout", 3),
          ("b_logic", 3), ("b_pool", 1)]


def build(seed, single_input=False):
    """One random model (ModelProto) and the tags that say what it covers."""
    rng = np.random.default_rng(seed)
    b = Builder(rng)
    rank = int(b.pick([2, 2, 3, 3, 4]))
    shape = (None,) + tuple(int(b.pick([2, 3, 4, 6, 8, 16])) for _ in range(rank - 1))
    while int(np.prod(shape[1:])) > 256:
        shape = shape[:-1]
    name = "x"
    b.inputs.append((name, FLOAT, shape, None))
    b.add(name, FLOAT, shape, True)
    if not single_input and b.chance(0.3):
        s2 = (None,) + shape[1:] if b.chance(0.6) else (None, int(b.pick([4, 8])))
        b.inputs.append(("x2", FLOAT, s2, None))
        b.add("x2", FLOAT, s2, True)
        b.tags.add("two-inputs")
    if not single_input and b.chance(0.1):
        b.b_embedding()
    blocks = [n for n, w in BLOCKS for _ in range(w)]
    for _ in range(int(rng.integers(2, 7))):
        getattr(b, b.pick(blocks))()
        if b.pool and b.chance(0.4):
            b.noop(b.pool[-1], force=True)
    final = [v for v in b.pool if v.dtype == FLOAT and v.batched]
    last = final[-1]
    outputs = [last]
    if not single_input:
        # Fan-out to a graph output: an intermediate value also read by later nodes.
        produced = [v for v in b.pool[:-1] if v.batched and v.name not in {i[0] for i in b.inputs}]
        for _ in range(int(rng.integers(0, 3))):
            if produced:
                v = b.pick(produced)
                if v not in outputs:
                    outputs.append(v)
                    b.tags.add("output-fanout")
    graph = helper.make_graph(
        b.nodes, f"difftest_{seed}",
        [helper.make_tensor_value_info(n, t, ["N"] + list(s[1:])) for n, t, s, _ in b.inputs],
        [helper.make_tensor_value_info(v.name, v.dtype, ["N"] + list(v.shape[1:])) for v in outputs],
        initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="sluice-difftest")
    model.ir_version = 8
    vocab = {n: v for n, _, _, v in b.inputs}
    return model, sorted(b.tags), vocab


def make_inputs(model, vocab, batch, seed):
    rng = np.random.default_rng(seed * 100 + batch)
    feeds = {}
    for i in model.graph.input:
        shape = [batch] + [d.dim_value for d in i.type.tensor_type.shape.dim[1:]]
        if i.type.tensor_type.elem_type == INT64:
            feeds[i.name] = rng.integers(0, vocab[i.name], size=shape).astype(np.int64)
        else:
            # Multiples of 1/64: exact in float32, with no ties at the comparison thresholds.
            feeds[i.name] = (np.round(rng.standard_normal(shape) * 64) / 64 + 1 / 128).astype(np.float32)
    return feeds


def run_ort(model_bytes, feeds):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def acceptable(outputs):
    """Outputs far from overflow and from NaN, so that float32 rounding cannot change the verdict."""
    for v in outputs.values():
        if v.dtype == np.float32 and (not np.all(np.isfinite(v)) or np.max(np.abs(v), initial=0) > 1e4):
            return False
    return True


def well_conditioned(data, feeds, outputs, seed):
    """Whether the outputs stay within half the comparison's tolerance when every float input moves
    by two ulps. Two runtimes that round differently may disagree by more than the tolerance on an
    ill-conditioned graph (LayerNormalization of a row whose values nearly agree, √ of a value near
    0) with neither wrong; such graphs test nothing and are skipped."""
    rng = np.random.default_rng(seed)
    moved = {k: (v * (1 + rng.choice([-2.0, 2.0], size=v.shape) * 2.0 ** -23)).astype(np.float32)
             if v.dtype == np.float32 else v for k, v in feeds.items()}
    again = run_ort(data, moved)
    return all(mismatch(again[k], v, rtol=1e-4) is None for k, v in outputs.items()
               if v.dtype == np.float32)


def generate_case(seed, single_input=False):
    """(model, tags, {batch: (feeds, outputs)}) for the first attempt at `seed` that onnxruntime runs."""
    for attempt in range(50):
        s = seed * 50 + attempt
        try:
            model, tags, vocab = build(s, single_input)
            onnx.checker.check_model(model)
            data = model.SerializeToString()
            runs = {}
            for batch in BATCHES:
                feeds = make_inputs(model, vocab, batch, s)
                outputs = run_ort(data, feeds)
                if not acceptable(outputs):
                    raise ValueError("outputs out of range")
                if not well_conditioned(data, feeds, outputs, s):
                    raise ValueError("outputs move with a two-ulp change of the inputs")
                runs[batch] = (feeds, outputs)
            return model, tags, runs
        except Exception as e:  # a graph the generator got wrong: try the next one
            if os.environ.get("DIFFTEST_VERBOSE"):
                print(f"seed {seed} attempt {attempt}: {e}", file=sys.stderr)
    raise RuntimeError(f"seed {seed}: no valid graph in 50 attempts")


def write_case(directory, name, model, runs):
    os.makedirs(directory, exist_ok=True)
    tensors = []
    for batch, (feeds, outputs) in sorted(runs.items()):
        tensors += [numpy_helper.from_array(v, f"in/{batch}/{k}") for k, v in feeds.items()]
        tensors += [numpy_helper.from_array(v, f"out/{batch}/{k}") for k, v in outputs.items()]
    data = helper.make_graph([], name, [], [], initializer=tensors)
    with open(os.path.join(directory, name + ".onnx"), "wb") as f:
        f.write(model.SerializeToString())
    with open(os.path.join(directory, name + ".pb"), "wb") as f:
        f.write(data.SerializeToString())


def read_case(path):
    model = onnx.load(path)
    data = onnx.GraphProto()
    with open(path[:-len(".onnx")] + ".pb", "rb") as f:
        data.ParseFromString(f.read())
    runs = {}
    for t in data.initializer:
        kind, batch, name = t.name.split("/", 2)
        runs.setdefault(int(batch), ({}, {}))[0 if kind == "in" else 1][name] = numpy_helper.to_array(t)
    return model, runs


def case_name(seed, tags):
    short = [t for t in tags if t in ("matmul-add", "gemm", "conv", "transpose-matmul", "add-layernorm", "gelu", "noop",
                                      "broadcast-residual", "int64", "int32", "float64", "float16", "bool",
                                      "output-fanout", "shape-chain")]
    return f"s{seed:05d}-" + "-".join(short[:4]) if short else f"s{seed:05d}"


def cmd_generate(args):
    t0 = time.time()
    counts = {}
    for seed in range(args.seed, args.seed + args.count):
        model, tags, runs = generate_case(seed, args.single_input)
        for t in tags:
            counts[t] = counts.get(t, 0) + 1
        write_case(args.out, case_name(seed, tags) if args.named else f"s{seed:05d}", model, runs)
    print(f"generated {args.count} cases in {time.time() - t0:.1f} s into {args.out}")
    print("patterns covered (cases):", json.dumps(dict(sorted(counts.items()))))


# ---- comparison ------------------------------------------------------------------------------
def mismatch(got, want, rtol=2e-4):
    """None when `got` matches onnxruntime's `want`, else why not. Floats within rtol · max(1, |want|);
    integers and bools exactly."""
    if got.shape != want.shape:
        return f"shape {list(got.shape)} != {list(want.shape)}"
    if want.dtype == np.float32:
        g, w = got.astype(np.float32), want
        nan = np.isnan(g) != np.isnan(w)
        if nan.any():
            return "NaN where onnxruntime has none (or the reverse)"
        err = np.abs(np.nan_to_num(g) - np.nan_to_num(w)) / np.maximum(1, np.abs(np.nan_to_num(w)))
        worst = float(err.max(initial=0))
        return None if worst <= rtol else f"max relative error {worst:.3g} at {np.unravel_index(int(err.argmax()), err.shape)}"
    return None if np.array_equal(got, want) else f"{int((got != want).sum())} elements differ"


# ---- process paths -----------------------------------------------------------------------------
def layer_count(sluice, pipeline):
    out = subprocess.run([sluice, "plan", pipeline], capture_output=True, text=True, timeout=120)
    # The layer table: rows "LAYER NODES OPS …" until the blank line before the split.
    layers = re.findall(r"^(\d+)\s+\d+(?:-\d+)?\s+\S", out.stdout.split("split over")[0], re.M)
    return len(layers) or None


def pipeline_yaml(model, rows, output, stages, split, batch):
    text = f"""model:
  path: {model}
source:
  type: tensors
  path: {rows}
batching:
  max_size: {batch}
  max_delay_ms: 5
stages:
  count: {stages}
"""
    if split:
        text += "  split: [" + ", ".join(f'"{a}-{b}"' if a != b else f'"{a}"' for a, b in split) + "]\n"
    text += f"sink:\n  type: npy\n  path: {output}\n"
    return text


def process_check(sluice, model_path, runs, rng, work, env=None):
    """Failures (list of strings) of `sluice infer` and `sluice run` on one single-input case."""
    failures = []
    env = dict(os.environ, **(env or {}))
    for batch, (feeds, want) in sorted(runs.items()):
        args = [sluice, "infer", model_path, "--output", os.path.join(work, f"infer{batch}")]
        for k, v in feeds.items():
            p = os.path.join(work, f"in{batch}_{k}.npy")
            np.save(p, v)
            args += ["--input", f"{k}={p}"]
        r = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
        if r.returncode != 0:
            failures.append(f"infer batch {batch}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
            continue
        for k, v in want.items():
            got = np.load(os.path.join(work, f"infer{batch}", f"{k}.npy"))
            why = mismatch(got, v)
            if why:
                failures.append(f"infer batch {batch} output {k}: {why}")
    # Pipelines: the rows of all batches as one tensors source.
    (name, first), = [(k, v) for k, v in runs[max(runs)][0].items()]
    rows = np.concatenate([runs[b][0][name] for b in sorted(runs)])
    out_name = onnx.load(model_path).graph.output[0].name
    expected = np.concatenate([runs[b][1][out_name] for b in sorted(runs)])
    rows_path = os.path.join(work, "rows.npy")
    np.save(rows_path, rows)
    probe = os.path.join(work, "probe.yaml")
    with open(probe, "w") as f:
        f.write(pipeline_yaml(model_path, rows_path, os.path.join(work, "probe.npy"), 1, None, 4))
    layers = layer_count(sluice, probe) or 1
    configs = [(1, None)]
    stages = min(layers, int(rng.integers(2, 4)))
    if stages >= 2:
        cuts = sorted(rng.choice(np.arange(1, layers), size=stages - 1, replace=False).tolist())
        bounds = [0] + cuts + [layers]
        configs.append((stages, [(a, b - 1) for a, b in zip(bounds, bounds[1:])]))
    for stages, split in configs:
        out = os.path.join(work, f"run{stages}.npy")
        yaml_path = os.path.join(work, f"run{stages}.yaml")
        with open(yaml_path, "w") as f:
            f.write(pipeline_yaml(model_path, rows_path, out, stages, split, int(rng.integers(1, 9))))
        if os.environ.get("DIFFTEST_VERBOSE"):
            print(f"  run: {stages} stage(s), split {split} of {layers} layers", file=sys.stderr)
        r = subprocess.run([sluice, "run", yaml_path], capture_output=True, text=True, timeout=300, env=env)
        if r.returncode != 0:
            failures.append(f"run {stages} stage(s) {split}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
            continue
        why = mismatch(np.load(out), expected)
        if why:
            failures.append(f"run {stages} stage(s) split {split}: {why}")
    return failures


def cmd_process(args):
    t0 = time.time()
    total, bad = 0, 0
    levels = args.levels.split(",")
    for seed in range(args.seed, args.seed + args.count):
        model, tags, runs = generate_case(seed, single_input=True)
        work = tempfile.mkdtemp(prefix="difftest-")
        try:
            path = os.path.join(work, "model.onnx")
            onnx.save(model, path)
            rng = np.random.default_rng(seed)
            failures = []
            for level in levels:
                env = {"SLUICE_KERNELS": level} if level != "best" else {}
                failures += [f"[{level}] {f}" for f in process_check(args.sluice, path, runs, rng, work, env)]
            total += 1
            if failures:
                bad += 1
                name = case_name(seed, tags)
                print(f"MISMATCH seed {seed} ({name}):\n  " + "\n  ".join(failures), flush=True)
                if args.keep:
                    write_case(args.keep, name, model, runs)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if total % 25 == 0:
            print(f"{total} graphs, {bad} mismatching, {time.time() - t0:.0f} s", flush=True)
    print(f"process paths: {total} graphs x levels {levels}, {bad} mismatching, {time.time() - t0:.0f} s")
    return 1 if bad else 0


def cmd_cli_fixtures(args):
    """Single-input cases whose plan has at least three layers: what the CLI test runs through
    `sluice infer` and a two-stage pipeline."""
    kept, seed = 0, args.seed
    wanted = [int(x) for x in args.seeds.split(",")] if args.seeds else None
    while kept < (len(wanted) if wanted else args.count):
        if wanted:
            seed = wanted[kept]
        model, tags, runs = generate_case(seed, single_input=True)
        work = tempfile.mkdtemp(prefix="difftest-")
        path = os.path.join(work, "model.onnx")
        onnx.save(model, path)
        probe = os.path.join(work, "probe.yaml")
        with open(probe, "w") as f:
            f.write(pipeline_yaml(path, path, os.path.join(work, "probe.npy"), 1, None, 4))
        layers = layer_count(args.sluice, probe) or 0
        shutil.rmtree(work, ignore_errors=True)
        if layers >= 3:
            write_case(args.out, case_name(seed, tags), model, runs)
            print(f"seed {seed}: {layers} layers, {len(model.graph.node)} nodes, {', '.join(tags)}")
            kept += 1
        elif wanted:
            raise SystemExit(f"seed {seed}: {layers} layers, a two-stage pipeline needs three or more")
        seed += 1


# ---- shrinking ---------------------------------------------------------------------------------
def prune(model):
    """Drops nodes and initializers no graph output depends on."""
    g = model.graph
    needed = {o.name for o in g.output}
    keep = []
    for n in reversed(list(g.node)):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    inits = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    inputs = [i for i in g.input if i.name in needed]
    del g.input[:]
    g.input.extend(inputs)
    return model


def copy_model(model):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def drop_unused(model):
    """Drops initializers and graph inputs no node reads (nodes stay, dead or not)."""
    g = model.graph
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    inits = [t for t in g.initializer if t.name in read]
    del g.initializer[:]
    g.initializer.extend(inits)
    inputs = [i for i in g.input if i.name in read]
    del g.input[:]
    g.input.extend(inputs)
    return model


def fit(model, runs):
    """`runs` with each batch's feeds limited to the model's inputs."""
    names = {i.name for i in model.graph.input}
    outs = {o.name for o in model.graph.output}
    return {b: ({k: v for k, v in feeds.items() if k in names}, {k: v for k, v in want.items() if k in outs})
            for b, (feeds, want) in runs.items()}


def category(line):
    """What kind of failure a "difftest FAIL" line reports, so that shrinking keeps to one kind."""
    if "load:" in line:
        return "load: " + re.sub(r"'[^']*'|\S+\.onnx|\[[\d, N]*\]", "", line.split("load:", 1)[1])[:60]
    for kind in ("not computed", "relative error", "values differ", "NaN", "element"):
        if kind in line:
            return "wrong values" if kind in ("relative error", "values differ", "NaN", "element") else kind
    return "error"


def all_values(model, feeds):
    """Every intermediate value of `model` on `feeds`, from onnxruntime."""
    names = {i.name for i in model.graph.input}
    feeds = {k: v for k, v in feeds.items() if k in names}
    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    for n in m.graph.node:
        for o in n.output:
            if o and o not in known:
                m.graph.output.append(helper.make_empty_tensor_value_info(o))
                known.add(o)
    return run_ort(m.SerializeToString(), feeds)


def candidates(model, runs):
    """Smaller variants of `model`: fewer outputs, a value turned into a graph input, a node bypassed."""
    g = model.graph
    if len(g.output) > 1:
        for i in range(len(g.output)):
            m = onnx.ModelProto()
            m.CopyFrom(model)
            del m.graph.output[i]
            yield "drop output", prune(m), runs
    if len(runs) > 1:
        for b in sorted(runs):
            yield f"batch {b} only", model, {b: runs[b]}
    # Whole dead branches, then one dead node at a time (dead nodes still shape the buffer plan,
    # so a failure may need some of them).
    pruned = prune(copy_model(model))
    if len(pruned.graph.node) < len(g.node):
        yield "drop dead nodes", pruned, runs
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    for idx, n in enumerate(g.node):
        if not any(o in read for o in n.output):
            m = copy_model(model)
            del m.graph.node[idx]
            yield f"drop dead {n.op_type}", drop_unused(m), runs
    values = {b: all_values(model, feeds) for b, (feeds, _) in runs.items()}
    inits = {t.name for t in g.initializer}
    # Cut: a computed value becomes a graph input fed with onnxruntime's value for it.
    for n in list(g.node):
        for o in n.output:
            if not o or o not in values[min(values)] or any(o == x.name for x in g.output):
                continue
            sample = values[min(values)][o]
            if sample.ndim == 0 or sample.dtype not in (np.float32, np.int64, np.bool_):
                continue
            m = onnx.ModelProto()
            m.CopyFrom(model)
            elem = {np.dtype(np.float32): FLOAT, np.dtype(np.int64): INT64, np.dtype(np.bool_): BOOL}[sample.dtype]
            m.graph.input.append(helper.make_tensor_value_info(o, elem, ["N"] + list(sample.shape[1:])))
            kept = [x for x in m.graph.node if o not in x.output]
            del m.graph.node[:]
            m.graph.node.extend(kept)
            m = drop_unused(m)
            new_runs = {}
            for b, (feeds, want) in runs.items():
                f = dict(feeds)
                f[o] = values[b][o]
                f = {k: v for k, v in f.items() if any(i.name == k for i in m.graph.input)}
                new_runs[b] = (f, want)
            yield f"cut at {o}", m, new_runs
    # Bypass: a node whose first input has its output's type is replaced by that input.
    for idx, n in enumerate(g.node):
        if len(n.output) != 1 or not n.input or not n.input[0] or n.input[0] in inits:
            continue
        src, dst = n.input[0], n.output[0]
        first = values[min(values)]
        a = first.get(src, runs[min(runs)][0].get(src))
        bv = first.get(dst)
        if a is None or bv is None or a.shape != bv.shape or a.dtype != bv.dtype:
            continue
        m = onnx.ModelProto()
        m.CopyFrom(model)
        del m.graph.node[idx]
        for x in m.graph.node:
            for k, name in enumerate(x.input):
                if name == dst:
                    x.input[k] = src
        if any(o.name == dst for o in m.graph.output):
            continue
        m = drop_unused(m)
        try:
            new_runs = {b: (feeds, run_ort(m.SerializeToString(), feeds)) for b, (feeds, _) in fit(m, runs).items()}
        except Exception:
            continue
        if not all(acceptable(o) for _, o in new_runs.values()):
            continue
        yield f"bypass {n.op_type}", m, new_runs


def swift_oracle(case_dir):
    """Whether the in-process comparison fails on the one case in `case_dir`, and its first failure line."""
    env = dict(os.environ, SLUICE_DIFFTEST_DIR=case_dir)
    # The test bundle itself (built by `swift build --build-tests`): `swift test` would add
    # seconds of planning to every try.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bundle = os.path.join(root, ".build", "debug", "SluicePackageTests.xctest")
    r = subprocess.run([bundle, "--testing-library", "swift-testing", "--filter", "DifferentialTests/generatedCases"],
                       capture_output=True, text=True, env=env, timeout=600, cwd=root)
    lines = [l for l in (r.stdout + r.stderr).splitlines() if "difftest FAIL" in l]
    return (bool(lines), lines[0] if lines else "")


def cmd_shrink(args):
    model, runs = read_case(args.case)
    work = tempfile.mkdtemp(prefix="difftest-shrink-")

    def fails(m, r):
        d = tempfile.mkdtemp(dir=work)
        write_case(d, "case", m, r)
        if args.oracle == "process":
            rng = np.random.default_rng(0)
            return bool(process_check(args.sluice, os.path.join(d, "case.onnx"), r, rng, d)), ""
        return swift_oracle(d)

    runs = fit(model, runs)
    ok, why = fails(model, runs)
    kind = category(why) if args.oracle == "swift" else "process"
    if not ok:
        print("the case does not fail: nothing to shrink")
        return 1
    print(f"fails: {why}")
    changed = True
    while changed:
        changed = False
        for what, m, r in candidates(model, runs):
            r = fit(m, r)
            try:
                onnx.checker.check_model(m)
            except Exception:
                continue
            bad, w = fails(m, r)
            if bad and (args.oracle == "process" or category(w) == kind):
                print(f"  {what}: {len(m.graph.node)} nodes still fail ({w.strip()[:160]})", flush=True)
                model, runs, why = m, r, w
                changed = True
                break
    ops = "-".join(dict.fromkeys(n.op_type.lower() for n in model.graph.node))[:80]
    name = args.name or f"regression-{ops}"
    write_case(args.out, name, model, runs)
    print(f"shrunk to {len(model.graph.node)} nodes: {os.path.join(args.out, name)}.onnx")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--count", type=int, default=100)
    g.add_argument("--out", required=True)
    g.add_argument("--single-input", action="store_true", help="only graphs a pipeline can run (one float32 input)")
    g.add_argument("--named", action="store_true", help="name cases by the patterns they cover")
    pr = sub.add_parser("process")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--count", type=int, default=20)
    pr.add_argument("--sluice", default=".build/debug/sluice")
    pr.add_argument("--levels", default="best", help="comma-separated SLUICE_KERNELS values (best, avx2, baseline)")
    pr.add_argument("--keep", help="folder to save mismatching cases in")
    c = sub.add_parser("cli-fixtures")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--count", type=int, default=3)
    c.add_argument("--seeds", help="comma-separated seeds to take (instead of the first COUNT with three layers)")
    c.add_argument("--out", required=True)
    c.add_argument("--sluice", default=".build/debug/sluice")
    s = sub.add_parser("shrink")
    s.add_argument("case")
    s.add_argument("--out", required=True)
    s.add_argument("--name")
    s.add_argument("--oracle", choices=["swift", "process"], default="swift")
    s.add_argument("--sluice", default=".build/debug/sluice")
    args = p.parse_args()
    return {"generate": cmd_generate, "process": cmd_process, "shrink": cmd_shrink,
            "cli-fixtures": cmd_cli_fixtures}[args.mode](args) or 0


if __name__ == "__main__":
    sys.exit(main())
