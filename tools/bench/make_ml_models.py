#!/usr/bin/env python3
"""Build the classical-model benchmark models with scikit-learn and skl2onnx.

forest.onnx  RandomForestClassifier, 100 trees of depth at most 8, 4 classes, 64 features
gbm.onnx     GradientBoostingClassifier, 100 rounds of depth-3 trees, 4 classes, 64 features
linear.onnx  LogisticRegression, 4 classes, 600 features (a flattened 6 x 100 window)

Exported with `options={"zipmap": False}`: onnxruntime's Python API would otherwise spend its
time building one dict per row, which says nothing of either runtime. Outputs: label (int64) and
probabilities (float [N, 4]). Seeded. Usage: make_ml_models.py OUTPUT_DIR
"""
import os
import sys

import numpy as np
from skl2onnx import to_onnx
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression


def data(features, samples=4000):
    X, y = make_classification(samples, features, n_informative=min(features, 24), n_classes=4, random_state=0)
    return X.astype(np.float32), y


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    X, y = data(64)
    models = {
        "forest": (RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0, n_jobs=1), X, y),
        "gbm": (GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0), X, y),
    }
    Xl, yl = data(600)
    models["linear"] = (LogisticRegression(max_iter=300), Xl, yl)
    for name, (model, features, labels) in models.items():
        model.fit(features, labels)
        onnx_model = to_onnx(model, features[:1], options={id(model): {"zipmap": False}})
        path = os.path.join(out, name + ".onnx")
        with open(path, "wb") as f:
            f.write(onnx_model.SerializeToString())
        print(path)


if __name__ == "__main__":
    main()
