#!/usr/bin/env python3
"""Mutated and hostile ONNX models through `sluice inspect` and `sluice infer`: neither may
crash, and each rejection must say why.

    python3 tools/fuzz_models.py [--count 1000] [--seed 1] [--sluice .build/debug/sluice]

Cases, in turn:
  - byte mutations of the fixture and pipeline models (bytes replaced, cut out, the file
    truncated): the protobuf may no longer parse, or parse into something else;
  - structural mutations through the onnx package: dimensions of initializers and inputs
    set to 0, -1, 2^31, 2^40 or 2^62; data types swapped; raw data cut short; attributes
    changed to hostile values; nodes dropped or rewired; opsets changed;
  - hostile external data: locations that climb out of the model's folder (`../../etc/passwd`,
    absolute paths, symbolic links to outside files), huge offsets and lengths.
Each model goes to `inspect`, and when that loads it, to `infer` with a random input of the
declared shape. Both must exit 0 or 3 (the model cannot be loaded or run), never by a signal
or another code; exit 3 must come with a message that names the model and a reason
(`sluice: error: PATH: ...`). No message may mention the contents or size of a file outside
the model's folder (checked with a canary file of a recognizable size).

Prints the counts and exits 1 when any case failed, keeping the failing models in --keep.
The suite runs a short fixed-seed version in Swift (Tests/SluiceONNXTests/HostileModelTests.swift).
"""
import argparse
import glob
import os
import random
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CANARY_SIZE = 31337
HUGE = [0, -1, 1, 3, 1 << 31, 1 << 40, 1 << 62, (1 << 63) - 1]


def sources():
    paths = sorted(glob.glob(os.path.join(ROOT, "Tests", "Fixtures", "models", "*.onnx")))
    paths += sorted(glob.glob(os.path.join(ROOT, "pipelines", "models", "*.onnx")))
    return [p for p in paths if "external-missing" not in p]


def byte_mutation(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not data:
            break
        at = rng.randrange(len(data))
        kind = rng.randrange(4)
        if kind == 0:
            data[at] = rng.randrange(256)
        elif kind == 1:
            data[at] = rng.choice([0x00, 0xFF, 0x7F, 0x80])
        elif kind == 2:
            del data[at:at + rng.randrange(1, 32)]
        else:
            data = data[:at]
    return bytes(data)


def structural_mutation(rng, model, folder):
    graph = model.graph
    kind = rng.randrange(9)
    if kind == 0 and graph.initializer:
        t = rng.choice(graph.initializer)
        if t.dims:
            t.dims[rng.randrange(len(t.dims))] = rng.choice(HUGE)
    elif kind == 1 and graph.input:
        dims = graph.input[0].type.tensor_type.shape.dim
        if dims:
            d = dims[rng.randrange(len(dims))]
            d.dim_value = rng.choice(HUGE)
    elif kind == 2 and graph.initializer:
        rng.choice(graph.initializer).data_type = rng.randrange(0, 20)
    elif kind == 3 and graph.initializer:
        t = rng.choice(graph.initializer)
        if t.raw_data:
            t.raw_data = t.raw_data[: rng.randrange(len(t.raw_data) + 1)]
    elif kind == 4 and graph.node:
        node = rng.choice(graph.node)
        for a in node.attribute:
            if a.type == onnx.AttributeProto.INT:
                a.i = rng.choice(HUGE)
            elif a.type == onnx.AttributeProto.INTS and len(a.ints):
                a.ints[rng.randrange(len(a.ints))] = rng.choice(HUGE)
            elif a.type == onnx.AttributeProto.FLOAT:
                a.f = rng.choice([float("nan"), float("inf"), -1.0, 0.0, 1e30])
    elif kind == 5 and len(graph.node) > 1:
        del graph.node[rng.randrange(len(graph.node))]
    elif kind == 6 and graph.node:
        node = rng.choice(graph.node)
        if node.input:
            names = [n for x in graph.node for n in x.output] + [i.name for i in graph.input]
            node.input[rng.randrange(len(node.input))] = rng.choice(names + ["", "nowhere"])
    elif kind == 7:
        for o in model.opset_import:
            o.version = rng.choice([0, 1, 7, 13, 17, 21, 99, -1])
    elif graph.initializer:
        t = rng.choice(graph.initializer)
        location = rng.choice(["../../../../../../etc/passwd", "/etc/passwd", "../canary.bin", "link-out.bin",
                               "sub/../../canary.bin", "inside.bin", "", "\u0000x", "." * 300])
        t.ClearField("raw_data")
        del t.float_data[:]
        t.data_location = TensorProto.EXTERNAL
        del t.external_data[:]
        for key, value in [("location", location), ("offset", rng.choice(["0", "-1", str(1 << 62), "x"])),
                           ("length", rng.choice(["", "16", str(1 << 62)]))]:
            if value:
                entry = t.external_data.add()
                entry.key, entry.value = key, value
    return model


def random_input(model, path):
    """An .npy of the first input's shape (symbolic dimensions 1), or None."""
    if not model.graph.input:
        return None
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not inputs:
        return None
    value = inputs[0]
    dims = [d.dim_value if d.HasField("dim_value") else 1 for d in value.type.tensor_type.shape.dim]
    if any(d < 0 for d in dims) or int(np.prod(dims, dtype=np.float64)) > 1 << 22:
        return None
    dtype = {1: np.float32, 7: np.int64, 6: np.int32, 11: np.float64}.get(value.type.tensor_type.elem_type)
    if dtype is None:
        return None
    np.save(path, np.random.default_rng(0).standard_normal(dims).astype(dtype))
    return "%s=%s" % (value.name, path)


def judge(result, model_path, command):
    if result.returncode not in (0, 3):
        return "%s: exit %d (a crash or a signal)" % (command, result.returncode)
    if result.returncode == 3:
        errors = [l for l in result.stderr.splitlines() if l.startswith("sluice: error: ")]
        if not errors or not errors[0].startswith("sluice: error: " + model_path):
            return "%s: exit 3 without a message naming the model: %r" % (command, result.stderr[-300:])
        if len(errors[0]) <= len("sluice: error: " + model_path) + 3:
            return "%s: exit 3 without a reason" % command
    if str(CANARY_SIZE) in result.stderr or "root:" in result.stderr:
        return "%s: the message tells of a file outside the model's folder: %r" % (command, result.stderr[-300:])
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sluice", default=os.path.join(ROOT, ".build", "debug", "sluice"))
    ap.add_argument("--keep", default="fuzz-models-failures")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    originals = [(p, open(p, "rb").read()) for p in sources()]
    work = tempfile.mkdtemp(prefix="sluice-fuzz-models-")
    with open(os.path.join(work, "canary.bin"), "wb") as f:
        f.write(b"\x01" * CANARY_SIZE)
    folder = os.path.join(work, "models")
    os.makedirs(os.path.join(folder, "sub"))
    os.symlink(os.path.join(work, "canary.bin"), os.path.join(folder, "link-out.bin"))
    with open(os.path.join(folder, "inside.bin"), "wb") as f:
        f.write(b"\x00" * 64)
    counts = {"cases": 0, "inspect ok": 0, "inspect rejected": 0, "infer ok": 0, "infer rejected": 0, "failures": 0}
    failures = []
    try:
        for case in range(args.count):
            source, data = rng.choice(originals)
            path = os.path.join(folder, "case-%05d.onnx" % case)
            model = None
            if case % 3 == 0:
                data = byte_mutation(rng, data)
            else:
                model = onnx.load_from_string(data)
                for _ in range(rng.randint(1, 2)):
                    model = structural_mutation(rng, model, folder)
                data = model.SerializeToString()
            with open(path, "wb") as f:
                f.write(data)
            counts["cases"] += 1
            problem = None
            inspect = subprocess.run([args.sluice, "inspect", path], capture_output=True, text=True, errors="replace", timeout=120)
            problem = judge(inspect, path, "inspect")
            counts["inspect ok" if inspect.returncode == 0 else "inspect rejected"] += 1
            if problem is None and inspect.returncode == 0:
                try:
                    model = model or onnx.load_from_string(data)
                    given = random_input(model, os.path.join(work, "input.npy"))
                except Exception:
                    given = None
                if given:
                    out = os.path.join(work, "out")
                    infer = subprocess.run([args.sluice, "infer", path, "--input", given, "--output", out],
                                           capture_output=True, text=True, errors="replace", timeout=300)
                    # infer may also refuse the input (exit 3): that too must name the model.
                    problem = judge(infer, path, "infer")
                    counts["infer ok" if infer.returncode == 0 else "infer rejected"] += 1
                    shutil.rmtree(out, ignore_errors=True)
            if problem:
                counts["failures"] += 1
                failures.append((path, os.path.basename(source), problem))
                os.makedirs(args.keep, exist_ok=True)
                shutil.copy(path, args.keep)
            else:
                os.remove(path)
        print("seed %d: %s" % (args.seed, ", ".join("%s %d" % kv for kv in counts.items())))
        for path, source, problem in failures[:50]:
            print("FAIL %s (from %s): %s" % (os.path.basename(path), source, problem))
        return 1 if failures else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
