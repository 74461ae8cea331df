#!/usr/bin/env python3
"""Train a small 1D CNN on ECG beats (mitdb excerpt) with PyTorch and export it to ONNX.

pipelines/models/ecg-cnn.onnx
    Input "window" float32 [N, 1, 256] (channels first: one ECG lead, 256
    samples at 360 Hz, a beat from 96 samples before its R peak), output
    "scores" float32 [N, 2] softmax over abnormal, normal (metadata_props
    "classes"). Conv(8,k7)-BN-ReLU-MaxPool4, Conv(16,k5)-BN-ReLU-MaxPool4,
    Conv(16,k5)-ReLU, global average pool, Linear(16,2), Softmax; exported with
    torch.onnx.export(dynamo=False, opset_version=17), batch-norm folded.

Trained on the TRAIN beats only (tools/export_ecg.py: 13 beats, one of them the
excerpt's single abnormal beat), on augmented copies made from the train beats
alone (shift by up to 12 samples with edge padding, amplitude x0.8..1.2,
baseline offset, Gaussian noise), classes balanced. A few seconds on one CPU
thread. Reports accuracy on the 12 TEST beats and on the streamed windows of
pipelines/data/ecg-test.csv (256 samples, hop 256 per sensor: one window per
test beat), checked with onnxruntime, and writes its row into the ECG section of
pipelines/models/ACCURACY.md. All TEST beats are normal (see export_ecg.py):
these figures cannot show whether an abnormal beat is caught.

Run from the repo root:  python3 tools/export_ecg.py && python3 tools/train_ecg.py
"""
import os
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

import export_ecg as ecg
from accuracy_md import upsert_row

PATH = os.path.join(ecg.MODELS_DIR, "ecg-cnn.onnx")
SECTION = "# ECG models"
INTRO = """Written by `tools/train_ecg.py` (trained on the TRAIN beats only). Data: the sktime wheel's `mitdb` excerpt, the only ECG it ships: one lead, 360 Hz, 20.8 s, 25 usable beats of which 1 is marked abnormal; `tools/export_ecg.py` splits the beats alternately into TRAIN (13, with the abnormal one) and TEST (12, all normal). Input `window` float32 [N, 1, 256] (a beat from 96 samples before its R peak), output `scores` float32 [N, 2] softmax over abnormal, normal.

- Test cases: the 12 TEST beats. They are all normal, so this only checks that normal beats are not flagged; no abnormal beat is left to test on. Not a benchmark.
- Streamed windows: 256 samples, hop 256, per sensor from `pipelines/data/ecg-test.csv` (12 windows, one per test beat).

| model | test-case accuracy | streamed-window accuracy | params | size | how trained |
|---|---|---|---|---|---|"""


class Net(nn.Module):
    def __init__(self, n_classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 8, 7, padding=3), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(4),
            nn.Conv1d(8, 16, 5, padding=2), nn.BatchNorm1d(16), nn.ReLU(), nn.MaxPool1d(4),
            nn.Conv1d(16, 16, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten())
        self.head = nn.Linear(16, n_classes)

    def forward(self, window):
        return torch.softmax(self.head(self.features(window)), dim=1)


def augment(X, y, rng, n_per_class):
    """Augmented copies of the train beats, n_per_class per class."""
    out_x, out_y = [], []
    for c in range(len(ecg.CLASSES)):
        src = X[y == c, 0]
        for _ in range(n_per_class):
            x = src[rng.integers(len(src))]
            s = int(rng.integers(-12, 13))
            x = np.pad(x, (max(s, 0), max(-s, 0)), mode="edge")[max(-s, 0):max(-s, 0) + len(x)] if s else x
            x = x * rng.uniform(0.8, 1.2) + rng.normal(0, 0.05) + rng.normal(0, 0.01, len(x))
            out_x.append(x)
            out_y.append(c)
    return np.array(out_x, dtype=np.float32)[:, None, :], np.array(out_y, dtype=np.int64)


def main():
    t0 = time.time()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    X, names = ecg.load_split("train")
    y = np.array([ecg.CLASSES.index(n) for n in names])
    Xa, ya = augment(X, y, rng, n_per_class=400)
    net = Net(len(ecg.CLASSES))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    xa, ta = torch.from_numpy(Xa), torch.from_numpy(ya)
    for epoch in range(30):
        net.train()
        perm = torch.randperm(len(xa))
        for i in range(0, len(xa), 64):
            b = perm[i:i + 64]
            loss = nn.functional.nll_loss(torch.log(net(xa[b]) + 1e-7), ta[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    print("trained 30 epochs on %d augmented beats, last loss %.4f (%.1f s)" % (len(xa), loss.item(), time.time() - t0))

    example = torch.from_numpy(X[:1])
    torch.onnx.export(net, (example,), PATH, dynamo=False, opset_version=17, input_names=["window"],
                      output_names=["scores"], dynamic_axes={"window": {0: "N"}, "scores": {0: "N"}})
    model = onnx.load(PATH)
    for k, val in (("classes", ",".join(ecg.CLASSES)), ("channels", "ecg"), ("window", str(ecg.LENGTH)),
                   ("sample_rate_hz", "360"), ("dataset", "sktime mitdb excerpt (MIT-BIH), train beats")):
        e = model.metadata_props.add()
        e.key, e.value = k, val
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, PATH)

    session = ort.InferenceSession(PATH, providers=["CPUExecutionProvider"])
    Xt, names_t = ecg.load_split("test")
    yt = np.array([ecg.CLASSES.index(n) for n in names_t])
    p_test = session.run(["scores"], {"window": Xt})[0]
    with torch.no_grad():
        diff = float(np.abs(p_test - net(torch.from_numpy(Xt)).numpy()).max())
    assert diff < 1e-4, "onnxruntime disagrees with torch: %g" % diff
    test_right = int((p_test.argmax(1) == yt).sum())
    p_train = session.run(["scores"], {"window": X})[0]
    windows, labels, _ = ecg.streamed_windows()
    p_win = session.run(["scores"], {"window": windows})[0]
    right = int(sum(ecg.CLASSES[int(i)] == l for i, l in zip(p_win.argmax(1), labels)))
    params = sum(p.numel() for p in net.parameters())
    size = os.path.getsize(PATH) / 1e6
    print("onnxruntime vs torch max |diff| %.1e; train beats right %d/%d (abnormal beat: p(abnormal) = %.3f)"
          % (diff, int((p_train.argmax(1) == y).sum()), len(y), float(p_train[y == 0, 0].min())))
    print("ops:", sorted({n.op_type for n in model.graph.node}))
    row = (f"| ecg-cnn.onnx | {100 * test_right / len(yt):.1f}% ({test_right}/{len(yt)}) | "
           f"{100 * right / len(labels):.1f}% ({right}/{len(labels)}) | {params} | {size:.2f} MB | "
           f"PyTorch 1D CNN, Adam, 30 epochs of augmented train beats (classes balanced) |")
    print(row)
    upsert_row(SECTION, INTRO, "| ecg-cnn.onnx", row)


if __name__ == "__main__":
    main()
