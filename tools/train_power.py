#!/usr/bin/env python3
"""Train a scikit-learn classifier on ACSF1 appliance power and export it with skl2onnx, unchanged.

pipelines/models/power-forest.onnx
    scikit-learn RandomForestClassifier on the raw window: input "X" float32
    [N, 1460] (one ACSF1 case, 1460 power samples at 0.1 Hz). Class labels are
    the data set's label strings "0".."9", so the default export's outputs are
    "output_label" (string [N]) and "output_probability" (ZipMap: label ->
    probability). Nothing is added to the exported graph and no feature is
    computed outside it: it is what a scikit-learn user gets from to_onnx.

Trained on the ACSF1 TRAIN split only (100 cases). Reports accuracy on all 100
test cases and on the streamed windows of pipelines/data/power-test.csv
(1460 samples, hop 1460 per sensor: one window per recorded test case),
checked with onnxruntime, and writes its row into the ACSF1 section of
pipelines/models/ACCURACY.md.

Run from the repo root:  python3 tools/export_power.py && python3 tools/train_power.py
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np
import onnx
import onnxruntime as ort
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestClassifier

import export_power as pw
from accuracy_md import upsert_row

PATH = os.path.join(pw.MODELS_DIR, "power-forest.onnx")
SECTION = "# ACSF1 appliance power models"
INTRO = """Written by `tools/train_power.py` (trained on the ACSF1 TRAIN split only, 100 cases). Input `X` float32 [N, 1460]: one case, 1460 power samples at 0.1 Hz (z-normalised per case, as the data set ships). Outputs `output_label` and `output_probability` (ZipMap) over the data set's labels 0..9 (10 appliance categories).

- Test cases: all 100 TEST-split cases.
- Streamed windows: 1460 samples, hop 1460, per sensor from `pipelines/data/power-test.csv` (30 of the test cases, 3 per class; one window per case); label = majority of the window's samples (every window is a single case).

| model | test-case accuracy | streamed-window accuracy | params | size | how trained |
|---|---|---|---|---|---|"""


def main():
    X, y = pw.load_split("train")
    forest = RandomForestClassifier(n_estimators=100, max_features="sqrt", random_state=0, n_jobs=1)
    forest.fit(X, y)
    model = to_onnx(forest, X[:1].astype(np.float32))
    onnx.checker.check_model(model)
    onnx.save(model, PATH)

    session = ort.InferenceSession(PATH, providers=["CPUExecutionProvider"])
    Xt, yt = pw.load_split("test")
    test_labels = session.run(["output_label"], {"X": Xt})[0]
    test_right = int(sum(str(l) == c for l, c in zip(test_labels, yt)))
    windows, labels, _ = pw.streamed_windows()
    streamed = session.run(["output_label"], {"X": windows})[0]
    right = int(sum(str(l) == c for l, c in zip(streamed, labels)))
    sk_right = int((forest.predict(Xt) == yt).sum())
    size = os.path.getsize(PATH) / 1e6
    row = (f"| power-forest.onnx | {100 * test_right / len(yt):.1f}% ({test_right}/{len(yt)}) | "
           f"{100 * right / len(labels):.1f}% ({right}/{len(labels)}) | "
           f"{sum(e.tree_.node_count for e in forest.estimators_)} nodes | {size:.2f} MB | "
           f"sklearn RandomForestClassifier (100 trees, sqrt features) on the raw window, default skl2onnx export |")
    print(row)
    print("scikit-learn itself: %d/%d test cases" % (sk_right, len(yt)))
    upsert_row(SECTION, INTRO, "| power-forest.onnx", row)


if __name__ == "__main__":
    main()
