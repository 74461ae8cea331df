"""Shared helpers for the BasicMotions tools (imported by the tools/*.py scripts).

Defines the class order used by the models, loads the train/test splits with the
dataset's capitalised class names, and cuts the streamed windows from the
recording written by export_basicmotions.py.
"""
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSV_PATH = os.path.join(ROOT, "pipelines", "data", "basicmotions-test.csv")
MODELS_DIR = os.path.join(ROOT, "pipelines", "models")
CLASSES = ["Badminton", "Running", "Standing", "Walking"]  # sorted; model output order
CHANNELS = ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]
WINDOW = 100
HOP = 50


def load_split(split):
    """Return (X float64 [n, 6, 100], y int64 class indices into CLASSES)."""
    from sktime.datasets import load_basic_motions

    X, y = load_basic_motions(split=split, return_type="numpy3D")
    idx = np.array([CLASSES.index(str(v).capitalize()) for v in y], dtype=np.int64)
    return np.ascontiguousarray(X, dtype=np.float64), idx


def window_label(labels):
    """Majority class of a window's per-sample labels; ties go to the last sample."""
    counts = np.bincount(labels, minlength=len(CLASSES))
    best = np.flatnonzero(counts == counts.max())
    return int(labels[-1]) if len(best) > 1 and labels[-1] in best else int(best[0])


def read_recording(path=CSV_PATH):
    """Return {sensor: (samples float64 [T, 6], labels int64 [T])}, sensors in id order."""
    from recordings import rows_by_sensor

    return {sensor: (np.array([[float(r[c]) for c in CHANNELS] for r in rs], dtype=np.float64),
                     np.array([CLASSES.index(r["label"]) for r in rs], dtype=np.int64))
            for sensor, rs in rows_by_sensor(path).items()}


def streamed_windows(path=CSV_PATH):
    """Windows of 100 samples, hop 50, per sensor (imu-0 first, then by start time).

    Returns (windows float32 [W, 6, 100] channels-first, labels int64 [W], keys) where
    keys[i] = (sensor, start_sample, mixed) with mixed = the window holds samples of
    more than one class.
    """
    wins, labs, keys = [], [], []
    for sensor, (x, lab) in read_recording(path).items():
        for s in range(0, len(x) - WINDOW + 1, HOP):
            wins.append(x[s:s + WINDOW].T)
            labs.append(window_label(lab[s:s + WINDOW]))
            keys.append((sensor, s, len(set(lab[s:s + WINDOW].tolist())) > 1))
    return np.stack(wins).astype(np.float32), np.array(labs, dtype=np.int64), keys
