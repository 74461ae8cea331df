#!/usr/bin/env python3
"""Export ECG beats from the sktime wheel's MIT-BIH excerpt as a sensor recording.

The only ECG the sktime wheel ships is sktime/datasets/data/mitdb/mitdb.csv: one
single-lead excerpt of an MIT-BIH Arrhythmia Database record, 7500 samples at
360 Hz (20.8 s), with a 0/1 "label" column that marks one 352-sample stretch
(samples 6936..7287) around the one premature beat in it (R peak at 7080, 198
samples after the previous beat against ~290 elsewhere). There is no train/test
split and no ECG classification set (no ECG200/ECG5000), so this script makes
one, and it is small:

- Beats: R peaks found with scipy.signal.find_peaks (height 0.5, at least 150
  samples apart: 26 beats); each beat is a 256-sample window (0.71 s) from 96
  samples before its R peak. 25 beats fit in the excerpt (the last one runs
  past its end). Class "abnormal" if the data set's label is 1 at the R peak,
  else "normal": 24 normal, 1 abnormal.
- TRAIN: beats 0, 2, 4, ..., 24 (13 beats, the abnormal one is beat 24).
  TEST: beats 1, 3, ..., 23 (12 beats, all normal). With a single abnormal
  beat there is none left to test on: test accuracy only says the model does
  not call normal beats abnormal.

Writes pipelines/data/ecg-test.csv: the 12 TEST beats as 4 sensors ecg-0..ecg-3,
sensor k carrying test beats k, k+4, k+8 back to back (3 x 256 samples),
t = i / 360 s, rows sorted by t then sensor. A window of 256 samples with hop
256 per sensor is then exactly one test beat. Values are the data set's (mV,
3 decimals), written shortest-exact as float32.

Run from the repo root:  python3 tools/export_ecg.py
"""
import os
import sys

import numpy as np

import recordings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "pipelines", "data", "ecg-test.csv")
MODELS_DIR = os.path.join(ROOT, "pipelines", "models")
RATE = 360.0  # Hz, MIT-BIH
LENGTH = 256
BEFORE = 96  # samples before the R peak
N_SENSORS = 4
CLASSES = ["abnormal", "normal"]  # sorted; model output order
HEADER = "sensor,t,ecg,label"


def load_record():
    """Return (x float32 [7500], y int [7500]) of the mitdb excerpt."""
    import csv

    import sktime

    path = os.path.join(os.path.dirname(sktime.__file__), "datasets", "data", "mitdb", "mitdb.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return (np.array([float(r["data"]) for r in rows], dtype=np.float32),
            np.array([int(float(r["label"])) for r in rows], dtype=np.int64))


def beats():
    """Return (windows float32 [25, 256], class names [25], R-peak sample indices [25])."""
    from scipy.signal import find_peaks

    x, y = load_record()
    peaks, _ = find_peaks(x, height=0.5, distance=150)
    peaks = [int(p) for p in peaks if p - BEFORE >= 0 and p - BEFORE + LENGTH <= len(x)]
    wins = np.stack([x[p - BEFORE:p - BEFORE + LENGTH] for p in peaks])
    names = np.array(["abnormal" if y[p] == 1 else "normal" for p in peaks])
    return wins, names, np.array(peaks)


def load_split(split):
    """Return (X float32 [n, 1, 256] channels first, class names [n])."""
    wins, names, _ = beats()
    idx = np.arange(len(wins))
    pick = idx[idx % 2 == (0 if split == "train" else 1)]
    return np.ascontiguousarray(wins[pick][:, None, :]), names[pick]


def streamed_windows(path=OUT, length=LENGTH, hop=LENGTH):
    """Windows per sensor as the pipeline cuts them: (windows [W, 1, length], majority labels, keys)."""
    windows, labels, keys = recordings.streamed_windows(path, "ecg", length, hop)
    return windows[:, None, :], labels, keys


def main():
    X, y = load_split("test")
    streams = [np.concatenate([X[c, 0] for c in range(k, len(X), N_SENSORS)]) for k in range(N_SENSORS)]
    labels = [[y[c] for c in range(k, len(X), N_SENSORS) for _ in range(LENGTH)] for k in range(N_SENSORS)]
    n = len(streams[0])
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", newline="\n") as f:
        f.write(HEADER + "\n")
        for i in range(n):
            t = repr(round(i / RATE, 6))
            for k in range(N_SENSORS):
                f.write("ecg-%d,%s,%s,%s\n" % (k, t, np.format_float_positional(streams[k][i], unique=True, trim="-"),
                                               labels[k][i]))
    _, names, peaks = beats()
    print("wrote %s (%.2f MB)" % (os.path.relpath(OUT, ROOT), os.path.getsize(OUT) / 1e6))
    print("  %d beats (R peaks %s), abnormal: %s" % (len(peaks), peaks.tolist(), peaks[names == "abnormal"].tolist()))
    print("  %d test beats: %d sensors x %d samples = %d rows, 1 channel, %g Hz, %.2f s"
          % (len(X), N_SENSORS, n, N_SENSORS * n, RATE, n / RATE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
