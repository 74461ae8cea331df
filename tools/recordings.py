"""Reading back a recording under pipelines/data (columns sensor, t, channels…, label) and
cutting a one-channel one's windows as a pipeline's source does, for the accuracy the training
scripts report."""
import csv
from collections import Counter

import numpy as np


def rows_by_sensor(path):
    """Return {sensor: its CSV rows in time order}, sensors in id order ("imu-2" before "imu-10")."""
    rows = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.setdefault(r["sensor"], []).append(r)
    return {sensor: sorted(rows[sensor], key=lambda r: float(r["t"]))
            for sensor in sorted(rows, key=lambda s: int(s.split("-")[-1]))}


def read_recording(path, channel):
    """Return {sensor: (samples float32 [T], labels [T])} of one channel, sensors in id order."""
    return {sensor: (np.array([float(r[channel]) for r in rs], dtype=np.float32), [r["label"] for r in rs])
            for sensor, rs in rows_by_sensor(path).items()}


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
