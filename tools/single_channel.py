"""Reading back a one-channel recording (pipelines/data/ecg-test.csv, power-test.csv) and
cutting its windows as a pipeline's source does, for the accuracy the training scripts report."""
import csv
from collections import Counter

import numpy as np


def read_recording(path, channel):
    """Return {sensor: (samples float32 [T], labels [T])}, sensors in id order."""
    rows = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.setdefault(r["sensor"], []).append(r)
    out = {}
    for sensor in sorted(rows, key=lambda s: int(s.split("-")[-1])):
        rs = sorted(rows[sensor], key=lambda r: float(r["t"]))
        out[sensor] = (np.array([float(r[channel]) for r in rs], dtype=np.float32), [r["label"] for r in rs])
    return out


def streamed_windows(path, channel, length, hop):
    """Windows per sensor as the pipeline cuts them: (windows [W, length], labels, keys). A
    window's label is its samples' majority, ties going to the last sample's label."""
    wins, labs, keys = [], [], []
    for sensor, (x, lab) in read_recording(path, channel).items():
        for s in range(0, len(x) - length + 1, hop):
            counts = Counter(lab[s:s + length])
            top = max(counts.values())
            best = [l for l, n in counts.items() if n == top]
            wins.append(x[s:s + length])
            labs.append(lab[s + length - 1] if lab[s + length - 1] in best else best[0])
            keys.append((sensor, s))
    return np.stack(wins).astype(np.float32), labs, keys
