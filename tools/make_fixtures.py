#!/usr/bin/env python3
"""Write onnxruntime reference fixtures for Sluice's tests under Tests/Fixtures/.

Inputs and expected outputs are float32 .npy files (little-endian, C order,
npy format 1.0). Expected outputs come from onnxruntime on the CPU with one
intra-op thread.

  quickstart_input.npy   [16, 6, 100]  the first 16 streamed windows of
                         pipelines/data/basicmotions-test.csv: 100 samples, hop
                         50, per sensor; imu-0 starts 0,50,...,400 (9 windows),
                         then imu-1 starts 0,50,...,300 (7 windows). Channels
                         first: [window, channel, time].
  quickstart_expected.npy [16, 4]      "scores" of pipelines/models/basicmotions-cnn.onnx
  mlp_input.npy          [8, 6, 100]   the first 8 of those windows (imu-0, starts 0..350)
  mlp_expected.npy       [8, 4]        "scores" of pipelines/models/basicmotions-mlp.onnx
  models/conv2d-small.onnx             seeded random weights, input "image" [N,3,16,16]:
      Conv(3->8,k3,s2,p1,bias) -> BatchNormalization -> Relu
      -> Conv(8->8,k3,s1,p1,group=2,no bias) -> Relu -> MaxPool(k2,s2)
      -> Reshape(shape=[0,-1] int64 initializer) -> MatMul(128->32) -> Add -> Relu
      -> Gemm(32->10,transB=1) -> Softmax (axis attribute left at its default, -1)
      output "probs" [N,10]
  conv2d_input.npy [4,3,16,16] / conv2d_expected.npy [4,10]
  models/tiny-mlp.onnx   input "x" [N,32] -> Gemm(32->64, B [32,64]) -> Relu
                         -> Gemm(64->16, transB=1) -> Softmax(axis=1), output "y" [N,16]
  tiny_mlp_input.npy [5,32] / tiny_mlp_expected.npy [5,16]
  models/unsupported-op.onnx  a valid model whose node "weird_node" is a
                         DynamicQuantizeLinear (opset 17); loading it must fail with
                         an error naming the op, the node and the opset.

Run from the repo root (after export_basicmotions.py and train_models.py):
    python3 tools/make_fixtures.py
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.dont_write_bytecode = True  # keep tools/ free of __pycache__
import basicmotions as bm  # noqa: E402  (tools/basicmotions.py)

SEED = 1234
OPSET = 17
IR_VERSION = 8
FIX = os.path.join(bm.ROOT, "Tests", "Fixtures")
FIX_MODELS = os.path.join(FIX, "models")


def f32(a):
    return np.ascontiguousarray(a, dtype="<f4")


def save_npy(name, arr):
    path = os.path.join(FIX, name)
    np.save(path, np.ascontiguousarray(arr))
    print("  %-28s %-8s %s" % (name, arr.dtype, list(arr.shape)))


def run(path, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def save_model(graph, name):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="sluice-tools")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    path = os.path.join(FIX_MODELS, name)
    onnx.save(model, path)
    print("  models/%-21s %d params" % (name, sum(int(np.prod(t.dims))
                                                    for t in graph.initializer)))
    return path


def conv2d_small(rng):
    # weights ~ N(0, 1/fan_in) keep the logits moderate, so the softmax output
    # is not saturated and still reflects errors in earlier layers
    r = lambda *shape: f32(rng.normal(0, 1.0 / np.sqrt(np.prod(shape[1:]) if len(shape) > 1
                                                       else 4.0), shape))
    init = [
        numpy_helper.from_array(r(8, 3, 3, 3), "conv1.weight"),
        numpy_helper.from_array(r(8), "conv1.bias"),
        numpy_helper.from_array(f32(rng.uniform(0.5, 1.5, 8)), "bn.scale"),
        numpy_helper.from_array(r(8), "bn.bias"),
        numpy_helper.from_array(r(8), "bn.mean"),
        numpy_helper.from_array(f32(rng.uniform(0.5, 2.0, 8)), "bn.var"),
        numpy_helper.from_array(r(8, 4, 3, 3), "conv2.weight"),  # group=2: 8/2 in-ch
        numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "flat.shape"),
        numpy_helper.from_array(f32(rng.normal(0, 1 / np.sqrt(128), (128, 32))), "fc1.weight"),
        numpy_helper.from_array(r(32), "fc1.bias"),
        numpy_helper.from_array(r(10, 32), "fc2.weight"),
        numpy_helper.from_array(r(10), "fc2.bias"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "conv1.weight", "conv1.bias"], ["c1"],
                         name="conv1", kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization",
                         ["c1", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["b1"],
                         name="bn", epsilon=1e-5),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "conv2.weight"], ["c2"], name="conv2_grouped",
                         kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], group=2),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Reshape", ["p", "flat.shape"], ["flat"], name="flatten_reshape"),
        helper.make_node("MatMul", ["flat", "fc1.weight"], ["m1"], name="fc1"),
        helper.make_node("Add", ["m1", "fc1.bias"], ["a1"], name="fc1_bias"),
        helper.make_node("Relu", ["a1"], ["r3"], name="relu3"),
        helper.make_node("Gemm", ["r3", "fc2.weight", "fc2.bias"], ["logits"], name="fc2",
                         transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax"),
    ]
    graph = helper.make_graph(
        nodes, "conv2d_small",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])], init)
    return save_model(graph, "conv2d-small.onnx")


def tiny_mlp(rng):
    init = [
        numpy_helper.from_array(f32(rng.normal(0, 0.25, (32, 64))), "fc1.weight"),
        numpy_helper.from_array(f32(rng.normal(0, 0.1, 64)), "fc1.bias"),
        numpy_helper.from_array(f32(rng.normal(0, 0.25, (16, 64))), "fc2.weight"),
        numpy_helper.from_array(f32(rng.normal(0, 0.1, 16)), "fc2.bias"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["hr"], name="relu"),
        helper.make_node("Gemm", ["hr", "fc2.weight", "fc2.bias"], ["logits"], name="fc2",
                         transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])], init)
    return save_model(graph, "tiny-mlp.onnx")


def unsupported_op():
    # A quantized op: Sluice leaves those out (float32 first), so this stays unsupported.
    nodes = [helper.make_node(
        "DynamicQuantizeLinear", ["x"], ["y", "y_scale", "y_zero_point"], name="weird_node")]
    graph = helper.make_graph(
        nodes, "unsupported_op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 6]),
         helper.make_tensor_value_info("y_scale", TensorProto.FLOAT, []),
         helper.make_tensor_value_info("y_zero_point", TensorProto.UINT8, [])])
    path = save_model(graph, "unsupported-op.onnx")
    x = np.array([[0, 0.5, -1.25, 2, 3.5, -0.75]], np.float32)
    run(path, {"x": x})  # valid: onnxruntime runs it


def main():
    os.makedirs(FIX_MODELS, exist_ok=True)
    rng = np.random.default_rng(SEED)
    wins, _, keys = bm.streamed_windows()
    print("writing %s" % os.path.relpath(FIX, bm.ROOT))

    cnn = os.path.join(bm.MODELS_DIR, "basicmotions-cnn.onnx")
    mlp = os.path.join(bm.MODELS_DIR, "basicmotions-mlp.onnx")
    for prefix, model, n in (("quickstart", cnn, 16), ("mlp", mlp, 8)):
        x = f32(wins[:n])
        save_npy(prefix + "_input.npy", x)
        save_npy(prefix + "_expected.npy", f32(run(model, {"window": x})[0]))

    path = conv2d_small(rng)
    x = f32(rng.normal(0, 1, (4, 3, 16, 16)))
    save_npy("conv2d_input.npy", x)
    save_npy("conv2d_expected.npy", f32(run(path, {"image": x})[0]))

    path = tiny_mlp(rng)
    x = f32(rng.normal(0, 1, (5, 32)))
    save_npy("tiny_mlp_input.npy", x)
    save_npy("tiny_mlp_expected.npy", f32(run(path, {"x": x})[0]))

    unsupported_op()

    with open(os.path.join(FIX, "README.md"), "w") as f:
        f.write("# Reference fixtures\n\nGenerated by `python3 tools/make_fixtures.py`; "
                "do not edit by hand.\n\n```\n%s```\n" % __doc__)

    total = sum(os.path.getsize(os.path.join(d, f))
                for d, _, fs in os.walk(FIX) for f in fs)
    print("total %.1f KB" % (total / 1024))
    return 0


if __name__ == "__main__":
    sys.exit(main())
