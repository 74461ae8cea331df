#!/usr/bin/env python3
"""Build the benchmark models with onnx.helper (no torch needed), shaped the way torch.onnx.export
writes them (opset 17, symbolic batch dimension "N", Gemm with transB for Linear, the
Shape->Gather->Unsqueeze->Concat->Reshape subgraph for head splitting, Gelu as Div/Erf/Add/Mul/Mul,
GRU with linear_before_reset=1 over a transposed, sequence-first input):

  mlp.onnx          window [N, 6, 100] -> Flatten -> 4 x (Gemm 1024 + Relu) -> Gemm 6
  cnn1d.onnx        window [N, 6, 128] -> Conv k5 64 + BN + Relu -> Conv k5 64 + BN + Relu -> MaxPool 2
                    -> Conv k3 128 + BN + Relu -> Conv k3 128 + Relu -> GlobalAveragePool -> Gemm 6
  transformer.onnx  window [N, 64, 6] -> embed 64 + positions -> 4 encoder layers (4 heads, FFN 128,
                    post-norm LayerNormalization, exact Gelu) -> mean over time -> Gemm 6
  gru.onnx          window [N, 64, 6] -> Transpose -> GRU 64 -> last state -> Gemm 6

Weights are seeded random. Usage: make_models.py OUTPUT_DIR
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(7)


class Graph:
    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, base):
        self.count += 1
        return f"{base}_{self.count}"

    def weight(self, shape, scale=None, base="w"):
        scale = scale if scale is not None else 1 / np.sqrt(shape[-1] if len(shape) > 1 else shape[0])
        name = self.name(base)
        self.inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def const(self, array, base="c"):
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, inputs, outputs=1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(op_type), **attrs))
        return outs[0] if outputs == 1 else outs

    def model(self, name, inputs, outputs):
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sluice-bench")
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def linear(g, x, fan_in, fan_out):
    """torch.nn.Linear on a 2-D input: Gemm with transB=1."""
    return g.op("Gemm", [x, g.weight([fan_out, fan_in]), g.weight([fan_out], 0.1, "b")], transB=1)


def mlp():
    g = Graph()
    x = g.op("Flatten", ["window"], axis=1)
    width = 600
    for _ in range(4):
        x = g.op("Relu", [linear(g, x, width, 1024)])
        width = 1024
    y = linear(g, x, width, 6)
    g.nodes[-1].output[0] = "scores"
    return g.model("mlp", [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["N", 6, 100])],
                   [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 6])])


def cnn1d():
    g = Graph()
    x = "window"
    channels = 6
    for i, (out, k, bn) in enumerate([(64, 5, True), (64, 5, True), (128, 3, True), (128, 3, False)]):
        x = g.op("Conv", [x, g.weight([out, channels, k], 1 / np.sqrt(channels * k)), g.weight([out], 0.1, "b")],
                 kernel_shape=[k], pads=[k // 2, k // 2])
        if bn:
            x = g.op("BatchNormalization", [x, g.const((1 + 0.1 * rng.standard_normal(out)).astype(np.float32)),
                                            g.const((0.1 * rng.standard_normal(out)).astype(np.float32)),
                                            g.const((0.1 * rng.standard_normal(out)).astype(np.float32)),
                                            g.const((1 + 0.1 * rng.random(out)).astype(np.float32))], epsilon=1e-5)
        x = g.op("Relu", [x])
        if i == 1:
            x = g.op("MaxPool", [x], kernel_shape=[2], strides=[2])
        channels = out
    x = g.op("GlobalAveragePool", [x])
    x = g.op("Flatten", [x], axis=1)
    linear(g, x, channels, 6)
    g.nodes[-1].output[0] = "scores"
    return g.model("cnn1d", [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["N", 6, 128])],
                   [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 6])])


def transformer(steps=64, d=64, heads=4, ff=128, layers=4):
    g = Graph()
    hd = d // heads

    def dense(x, fan_in, fan_out):
        """torch.nn.Linear on a 3-D input: MatMul by the transposed weight, then Add."""
        return g.op("Add", [g.op("MatMul", [x, g.weight([fan_in, fan_out], 1 / np.sqrt(fan_in))]), g.weight([fan_out], 0.1, "b")])

    def layer_norm(x):
        return g.op("LayerNormalization", [x, g.const(np.ones(d, np.float32)), g.const(np.zeros(d, np.float32))],
                    axis=-1, epsilon=1e-5)

    x = g.op("Add", [dense("window", 6, d), g.weight([steps, d], 0.1, "pos")])
    # The batch size as torch exports it: Shape -> Gather(0) -> Unsqueeze.
    batch = g.op("Unsqueeze", [g.op("Gather", [g.op("Shape", [x]), g.const(np.array(0, np.int64))], axis=0),
                               g.const(np.array([0], np.int64))])
    split_shape = g.op("Concat", [batch, g.const(np.array([steps, heads, hd], np.int64))], axis=0)
    merge_shape = g.op("Concat", [batch, g.const(np.array([steps, d], np.int64))], axis=0)
    scale = g.const(np.array(1 / np.sqrt(hd), np.float32))
    for _ in range(layers):
        q, k, v = (g.op("Transpose", [g.op("Reshape", [dense(x, d, d), split_shape])], perm=[0, 2, 1, 3]) for _ in range(3))
        scores = g.op("Mul", [g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])]), scale])
        attention = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        merged = g.op("Reshape", [g.op("Transpose", [attention], perm=[0, 2, 1, 3]), merge_shape])
        x = layer_norm(g.op("Add", [x, dense(merged, d, d)]))
        h = dense(x, d, ff)
        # Exact Gelu as torch exports it: x * 0.5 * (1 + erf(x / sqrt(2))).
        erf = g.op("Erf", [g.op("Div", [h, g.const(np.array(np.sqrt(2), np.float32))])])
        gelu = g.op("Mul", [g.op("Mul", [h, g.op("Add", [erf, g.const(np.array(1, np.float32))])]),
                            g.const(np.array(0.5, np.float32))])
        x = layer_norm(g.op("Add", [x, dense(gelu, ff, d)]))
    pooled = g.op("ReduceMean", [x], axes=[1], keepdims=0)
    linear(g, pooled, d, 6)
    g.nodes[-1].output[0] = "scores"
    return g.model("transformer", [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["N", steps, 6])],
                   [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 6])])


def gru(steps=64, hidden=64):
    g = Graph()
    x = g.op("Transpose", ["window"], perm=[1, 0, 2])
    w, r = g.weight([1, 3 * hidden, 6], 0.3), g.weight([1, 3 * hidden, hidden], 1 / np.sqrt(hidden))
    b = g.weight([1, 6 * hidden], 0.1, "b")
    _, state = g.op("GRU", [x, w, r, b], outputs=2, hidden_size=hidden, linear_before_reset=1)
    last = g.op("Squeeze", [state, g.const(np.array([0], np.int64))])
    linear(g, last, hidden, 6)
    g.nodes[-1].output[0] = "scores"
    return g.model("gru", [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["N", steps, 6])],
                   [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 6])])


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    for name, build in (("mlp", mlp), ("cnn1d", cnn1d), ("transformer", transformer), ("gru", gru)):
        path = os.path.join(out, name + ".onnx")
        onnx.save(build(), path)
        print(path)


if __name__ == "__main__":
    main()
