#!/usr/bin/env python3
"""Write the broken models the CLI tests use to check `sluice inspect`'s error messages.

  Tests/Fixtures/models/external-missing.onnx  x [N, 4] -> MatMul(w) -> y; the initializer "w"
      [4, 2] lives in external data file "missing-weights.bin", which does not exist.
  Tests/Fixtures/models/shape-mismatch.onnx    x [N, 3] -> Add(b [4]) named "bad_add" -> y;
      shapes [1, 3] and [4] do not broadcast, so loading fails at inference.

Run from the repo root: python3 tools/make_runtime_fixtures.py
"""
import os

import onnx
from onnx import TensorProto, helper

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "models")


def external_missing():
    w = TensorProto()
    w.name = "w"
    w.data_type = TensorProto.FLOAT
    w.dims.extend([4, 2])
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "missing-weights.bin"), ("offset", "0"), ("length", "32")):
        entry = w.external_data.add()
        entry.key = key
        entry.value = value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="project")], "external-missing",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], initializer=[w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sluice-tools")


def shape_mismatch():
    b = helper.make_tensor("b", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "b"], ["y"], name="bad_add")], "shape-mismatch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sluice-tools")


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, model in (("external-missing.onnx", external_missing()), ("shape-mismatch.onnx", shape_mismatch())):
        model.ir_version = 8
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(model.SerializeToString())
        print("wrote", os.path.normpath(os.path.join(OUT, name)))


if __name__ == "__main__":
    main()
