#!/usr/bin/env python3
"""Export part of the ACSF1 TEST split as an appliance-power sensor recording.

ACSF1 (UCR; from ACS-F1, Gisler et al. 2013) holds the power consumption of
home appliances, 10 classes, 100 train and 100 test cases, each one series of
1460 samples (z-normalised per series, as shipped in the sktime wheel under
sktime/datasets/data/ACSF1). Chosen over PLAID because every case has the same
length, so the model's input is a whole case and nothing is cropped or padded;
PLAID's series run from 100 to 1344 samples and a fixed window would cut most
of them short.

Writes pipelines/data/power-test.csv with a subset of the test split, so the
file stays under ~1.5 MB: the first 3 test cases of each class (30 of 100, in
the split's order), laid out as 10 sensors plug-0..plug-9; sensor k carries
one case of class k, then k+1, then k+2 (mod 10), back to back (3 x 1460
samples). t = i * 10 s:
ACS-F1 reads each appliance every 10 s (0.1 Hz). Rows are sorted by t, then
sensor, like an interleaved live feed. A window of 1460 samples with hop 1460
per sensor is then exactly one test case.

Labels are the class labels as written in the .ts file ("0".."9"). Its header
lists the categories as mobile phones, coffee machines, computer stations,
fridges and freezers, Hi-Fi systems, lamps (CFL), laptops, microwave ovens,
printers and televisions, but does not say which number is which, so the
numbers are kept. Values are the float32 values, written shortest-exact.

Run from the repo root:  python3 tools/export_power.py
"""
import os
import sys

import numpy as np

import recordings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "pipelines", "data", "power-test.csv")
MODELS_DIR = os.path.join(ROOT, "pipelines", "models")
LENGTH = 1460
DT = 10.0  # s per sample
N_SENSORS = 10
PER_CLASS = 3
CLASSES = [str(c) for c in range(10)]  # as in the .ts header; model output order
HEADER = "sensor,t,power,label"


def load_split(split):
    """Return (X float32 [n, 1460], y array of class label strings), in the split's order."""
    import sktime
    from sktime.datasets import load_from_tsfile

    path = os.path.join(os.path.dirname(sktime.__file__), "datasets", "data", "ACSF1",
                        "ACSF1_%s.ts" % split.upper())
    X, y = load_from_tsfile(path, return_data_type="numpy3D")
    assert X.shape[1:] == (1, LENGTH), X.shape
    return np.ascontiguousarray(X[:, 0, :], dtype=np.float32), np.array([str(v) for v in y])


def subset(y):
    """Test cases written, in file order: the first PER_CLASS of each class, arranged so that
    sensor k (cases k, k+10, k+20 of this list) carries classes k, k+1, k+2 (mod 10)."""
    picked = [np.flatnonzero(y == c)[:PER_CLASS] for c in CLASSES]
    return [int(picked[(k + j) % len(CLASSES)][j]) for j in range(PER_CLASS) for k in range(N_SENSORS)]


def streamed_windows(path=OUT, length=LENGTH, hop=LENGTH):
    """Windows per sensor as the pipeline cuts them: (windows [W, length], majority labels, keys)."""
    windows, labels, keys = recordings.streamed_windows(path, "power", length, hop)
    return windows, labels, keys


def main():
    X, y = load_split("test")
    cases = subset(y)
    streams = [np.concatenate([X[c] for c in cases[k::N_SENSORS]]) for k in range(N_SENSORS)]
    labels = [[y[c] for c in cases[k::N_SENSORS] for _ in range(LENGTH)] for k in range(N_SENSORS)]
    n = len(streams[0])
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", newline="\n") as f:
        f.write(HEADER + "\n")
        for i in range(n):
            t = "%g" % (i * DT)
            for k in range(N_SENSORS):
                f.write("plug-%d,%s,%s,%s\n" % (k, t,
                        np.format_float_positional(streams[k][i], unique=True, trim="-"), labels[k][i]))
    print("wrote %s (%.2f MB)" % (os.path.relpath(OUT, ROOT), os.path.getsize(OUT) / 1e6))
    print("  %d of %d test cases: %d sensors x %d samples = %d rows, 1 channel, %g Hz, %.0f s"
          % (len(cases), len(y), N_SENSORS, n, N_SENSORS * n, 1 / DT, n * DT))
    for k in range(N_SENSORS):
        print("  plug-%d: cases %s, labels %s" % (k, cases[k::N_SENSORS], " ".join(y[c] for c in cases[k::N_SENSORS])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
