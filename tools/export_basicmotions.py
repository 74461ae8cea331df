#!/usr/bin/env python3
"""Export the BasicMotions TEST split as a live-feed sensor recording.

Writes pipelines/data/basicmotions-test.csv: 40 test cases (100 timesteps x 6
channels each, 10 Hz) laid out as 8 sensors imu-0..imu-7. Sensor k carries test
cases k, k+8, k+16, k+24, k+32 back to back (500 samples, t = i * 0.1 s).
Rows are sorted by t, then sensor, like an interleaved live feed.

Values are written with repr(), i.e. exactly as in the .ts source (lossless).
Labels use the class names as written in the dataset's .ts header
(Standing, Running, Walking, Badminton); sktime's loader lower-cases them.

Run from the repo root:  python3 tools/export_basicmotions.py
"""
import os
import sys

import numpy as np
from sktime.datasets import load_basic_motions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "pipelines", "data", "basicmotions-test.csv")
N_SENSORS = 8
DT = 0.1
HEADER = "sensor,t,acc_x,acc_y,acc_z,gyr_x,gyr_y,gyr_z,label"


def class_name(raw):
    return str(raw).capitalize()  # "standing" -> "Standing", as in the .ts header


def main():
    X, y = load_basic_motions(split="test", return_type="numpy3D")
    assert X.shape == (40, 6, 100), X.shape
    n_cases, n_ch, n_t = X.shape
    per_sensor = n_cases // N_SENSORS  # 5 cases per sensor

    # streams[k]: (500, 6) samples, labels[k]: 500 class names
    streams, labels = [], []
    for k in range(N_SENSORS):
        cases = [k + j * N_SENSORS for j in range(per_sensor)]
        streams.append(np.concatenate([X[c].T for c in cases], axis=0))
        labels.append([class_name(y[c]) for c in cases for _ in range(n_t)])

    n = per_sensor * n_t
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", newline="\n") as f:
        f.write(HEADER + "\n")
        for i in range(n):
            t = "%.1f" % (i * DT)
            for k in range(N_SENSORS):
                vals = ",".join(repr(float(v)) for v in streams[k][i])
                f.write("imu-%d,%s,%s,%s\n" % (k, t, vals, labels[k][i]))

    print("wrote %s" % os.path.relpath(OUT, ROOT))
    print("  %d sensors x %d samples = %d rows, %d channels, %.0f Hz, %.1f s"
          % (N_SENSORS, n, N_SENSORS * n, n_ch, 1 / DT, n * DT))
    for k in range(N_SENSORS):
        seq = [labels[k][j * n_t] for j in range(per_sensor)]
        print("  imu-%d: %s" % (k, " ".join(seq)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
