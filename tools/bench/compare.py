#!/usr/bin/env python3
"""Run `sluice bench` and onnxruntime side by side on the benchmark models and print the table.

For each model and batch size both runtimes are measured in the same run, alternating, and the
best of --repeat measurements is kept for each (other processes on a shared machine only ever
slow a measurement down). Before timing, Sluice's outputs are checked against onnxruntime's.
GFLOP/s is reported for the Gemm-bound models against cblas_sgemm's peak measured here.

Usage: compare.py --sluice PATH --models DIR --peak-json JSON [--batch 1,8,32] [--seconds 2]
       [--threads 1] [--repeat 3] [--markdown]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from ort_bench import inputs_for, session  # noqa: E402

MODELS = ["mlp", "cnn1d", "transformer", "gru", "encoder", "forest", "gbm", "linear"]
GEMM_BOUND = {"mlp", "cnn1d"}


def flops_per_sample(sluice, model):
    out = subprocess.run([sluice, "inspect", model], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("FLOPs:"):
            return float(line.split()[1]) * 1e6
    return 0.0


def check_outputs(sluice, model, threads):
    """Max |sluice − onnxruntime| / max(1, |onnxruntime|) over the outputs at batch 8."""
    sess = session(model, threads)
    feed = inputs_for(sess, 8, np.random.default_rng(1))
    expected = sess.run(None, feed)
    with tempfile.TemporaryDirectory() as folder:
        args = [sluice, "infer", model, "--output", folder]
        for name, value in feed.items():
            path = os.path.join(folder, name + ".npy")
            np.save(path, value)
            args += ["--input", f"{name}={path}"]
        subprocess.run(args, capture_output=True, text=True, check=True)
        worst = 0.0
        for info, value in zip(sess.get_outputs(), expected):
            actual = np.load(os.path.join(folder, info.name + ".npy"))
            worst = max(worst, float(np.max(np.abs(actual - value) / np.maximum(1, np.abs(value)))))
    return worst


def run_json(args):
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return {row["batch"]: row for row in map(json.loads, out.strip().splitlines())}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sluice", required=True)
    p.add_argument("--models", required=True)
    p.add_argument("--peak-json", required=True)
    p.add_argument("--batch", default="1,8,32")
    p.add_argument("--seconds", type=float, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--only", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    a = p.parse_args()
    peak = json.loads(a.peak_json)["peak_gflops"]
    batches = [int(b) for b in a.batch.split(",")]
    rows = []
    for name in [m for m in MODELS if m in a.only.split(",")]:
        model = os.path.join(a.models, name + ".onnx")
        if not os.path.exists(model):
            print(f"{name}: {model} missing, skipped", file=sys.stderr, flush=True)
            continue
        error = check_outputs(a.sluice, model, a.threads)
        flops = flops_per_sample(a.sluice, model)
        best_sluice, best_ort = {}, {}
        for _ in range(a.repeat):
            s = run_json([a.sluice, "bench", model, "--batch", a.batch, "--seconds", str(a.seconds),
                          "--threads", str(a.threads), "--json"])
            o = run_json([sys.executable, os.path.join(HERE, "ort_bench.py"), model, "--batch", a.batch,
                          "--seconds", str(a.seconds), "--threads", str(a.threads)])
            for b in batches:
                if b not in best_sluice or s[b]["windows_per_second"] > best_sluice[b]["windows_per_second"]:
                    best_sluice[b] = s[b]
                if b not in best_ort or o[b]["windows_per_second"] > best_ort[b]["windows_per_second"]:
                    best_ort[b] = o[b]
        for b in batches:
            s, o = best_sluice[b], best_ort[b]
            rows.append({"model": name, "batch": b, "sluice": s["windows_per_second"], "ort": o["windows_per_second"],
                         "ratio": s["windows_per_second"] / o["windows_per_second"],
                         "sluice_p50": s["p50_ms"], "ort_p50": o["p50_ms"], "sluice_p99": s["p99_ms"], "ort_p99": o["p99_ms"],
                         "sluice_gflops": s["windows_per_second"] * flops / 1e9 if name in GEMM_BOUND else None,
                         "ort_gflops": o["windows_per_second"] * flops / 1e9 if name in GEMM_BOUND else None,
                         "mflop": flops / 1e6, "error": error})
        print(f"{name}: outputs match onnxruntime within {error:.1e}; {flops / 1e6:.3f} MFLOP/window", file=sys.stderr, flush=True)

    header = ["model", "batch", "Sluice windows/s", "onnxruntime windows/s", "ratio", "Sluice p50 ms", "ORT p50 ms",
              "Sluice p99 ms", "ORT p99 ms", "Sluice GFLOP/s (% peak)", "ORT GFLOP/s (% peak)"]

    def gf(v):
        return "" if v is None else f"{v:.1f} ({100 * v / peak:.0f}%)"
    table = [[r["model"], str(r["batch"]), f"{r['sluice']:.0f}", f"{r['ort']:.0f}", f"{r['ratio']:.2f}",
              f"{r['sluice_p50']:.3f}", f"{r['ort_p50']:.3f}", f"{r['sluice_p99']:.3f}", f"{r['ort_p99']:.3f}",
              gf(r["sluice_gflops"]), gf(r["ort_gflops"])] for r in rows]
    if a.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for t in table:
            print("| " + " | ".join(t) + " |")
    else:
        widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for t in table:
            print("  ".join(c.ljust(w) for c, w in zip(t, widths)))
    print(f"cblas_sgemm peak (1 thread, measured now): {peak:.1f} GFLOP/s; {json.loads(a.peak_json)}")


if __name__ == "__main__":
    main()
