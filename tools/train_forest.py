#!/usr/bin/env python3
"""Train a random forest on BasicMotions windows and export it with skl2onnx, unchanged.

pipelines/models/basicmotions-forest.onnx
    scikit-learn RandomForestClassifier (40 trees, depth at most 10) on raw
    windows flattened channels first: input "X" float32 [N, 600] (acc x/y/z,
    gyr x/y/z, 100 samples each at 10 Hz). Class labels are the class names, so
    the default export's outputs are "output_label" (string [N]) and
    "output_probability" (ZipMap: class name -> probability). Nothing is added
    to the exported graph: it is what a scikit-learn user gets from to_onnx.

Trained on the TRAIN split only, with the augmented windows tools/train_models.py
uses. Reports accuracy on the 40 test cases and on the streamed windows of
pipelines/data/basicmotions-test.csv, checked with onnxruntime, and adds its
row to pipelines/models/ACCURACY.md.

Run from the repo root:  python3 tools/train_forest.py
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np
import onnx
import onnxruntime as ort
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestClassifier

import basicmotions as bm
from accuracy_md import upsert_row
from train_models import augment

PATH = os.path.join(bm.MODELS_DIR, "basicmotions-forest.onnx")


def flat(windows):
    return np.ascontiguousarray(windows.reshape(len(windows), -1), dtype=np.float32)


def main():
    rng = np.random.default_rng(7)
    X, y = bm.load_split("train")
    Xa, ya = augment(X, y, rng, n_class_windows=800, n_pair_windows=800)
    names = np.array(bm.CLASSES)
    forest = RandomForestClassifier(n_estimators=40, max_depth=10, random_state=0, n_jobs=1)
    forest.fit(flat(np.concatenate([X, Xa])), names[np.concatenate([y, ya])])
    model = to_onnx(forest, flat(X[:1]))
    onnx.checker.check_model(model)
    onnx.save(model, PATH)

    session = ort.InferenceSession(PATH, providers=["CPUExecutionProvider"])
    Xt, yt = bm.load_split("test")
    test_labels = session.run(["output_label"], {"X": flat(Xt)})[0]
    test_right = int(sum(str(l) == bm.CLASSES[c] for l, c in zip(test_labels, yt)))
    windows, labels, keys = bm.streamed_windows()
    streamed = session.run(["output_label"], {"X": flat(windows)})[0]
    right = [str(l) == bm.CLASSES[c] for l, c in zip(streamed, labels)]
    mixed = [k[2] for k in keys]
    mixed_right = sum(r for r, m in zip(right, mixed) if m)
    size = os.path.getsize(PATH) / 1e6
    row = (f"| basicmotions-forest.onnx | {100 * test_right / len(yt):.1f}% ({test_right}/{len(yt)}) | "
           f"{100 * sum(right) / len(right):.1f}% ({sum(right)}/{len(right)}) | {mixed_right}/{sum(mixed)} | "
           f"{sum(len(e.tree_.value) for e in forest.estimators_)} nodes | {size:.2f} MB | "
           f"sklearn RandomForestClassifier (40 trees, depth <= 10) on flattened windows, default skl2onnx export |")
    print(row)
    upsert_row("# BasicMotions models", "", "| basicmotions-forest.onnx", row)


if __name__ == "__main__":
    main()
