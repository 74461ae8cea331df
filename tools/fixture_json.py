"""Tensors as the fixture sets under Tests/Fixtures write them (tools/make_ml_fixtures.py,
tools/make_exporter_fixtures.py): {"dtype", "shape", "values"}, values flat and row-major."""
import math

import numpy as np


def number(x):
    """A float as text: Python's shortest round-tripping form, or nan/inf/-inf. A JSON reader that
    parses numbers itself may be off by an ulp, and rows placed exactly on a double threshold
    would then take the other branch."""
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(x)


def tensor_json(array):
    """A numpy array (or what onnxruntime returned) as a TENSOR object."""
    a = np.asarray(array)
    if a.dtype.kind in ("U", "S", "O"):
        return {"dtype": "string", "shape": list(a.shape), "values": [str(v) for v in a.reshape(-1)]}
    dtype = a.dtype.name
    assert dtype in ("float32", "float64", "int64", "int32", "bool"), dtype
    flat = a.reshape(-1).tolist()
    if a.dtype.kind == "f":
        values = [number(v) for v in flat]
    elif a.dtype.kind == "b":
        values = [bool(v) for v in flat]
    else:
        values = [int(v) for v in flat]
    return {"dtype": dtype, "shape": list(a.shape), "values": values}
