#!/usr/bin/env python3
"""The same cores, four ways: does the planned pipeline beat onnxruntime given all the cores?

For each model and core budget N, measured in one run:
  ort N threads     onnxruntime, one process, intra_op_num_threads=N, micro-batches of --batch
  sluice N threads  `sluice bench --threads N`: Sluice's executor, one process
  N stages          a hand-built pipeline: N stage processes of one core each, split by the planner
  planned           `cores: N`, `stages.count: auto`: the planner's stages, replicas and threads
The pipelines stream the BasicMotions recording through the source's sliding windows to a jsonl
sink (/dev/null) and are timed end to end at the sink; the single processes run on ready inputs.
Source, sink and controller are not counted in N (they mostly wait). Ratios are against
onnxruntime with the same N.

  python3 tools/bench/cores.py --binary .build/release/sluice [--models mlp,transformer] [--cores 4,8] [--seconds 8]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

from common import ROOT, release_binary, run
from rebalance import steady_rate

HERE = os.path.dirname(os.path.abspath(__file__))
RECORDING = os.path.join(ROOT, "pipelines", "data", "basicmotions-test.csv")
# Window shape each benchmark model takes: [length, layout] over the recording's 6 channels.
WINDOWS = {"mlp": (100, "channels_first"), "cnn1d": (128, "channels_first"),
           "transformer": (64, "channels_last"), "gru": (64, "channels_last")}
SENSORS, SAMPLES = 8, 500  # the recording: 8 sensors × 500 samples


def ort_rate(model, batch, threads, seconds):
    out = subprocess.run([sys.executable, os.path.join(HERE, "ort_bench.py"), model, "--batch", str(batch),
                          "--threads", str(threads), "--seconds", str(seconds)], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["windows_per_second"]


def sluice_rate(binary, model, batch, threads, seconds):
    out = subprocess.run([binary, "bench", model, "--batch", str(batch), "--threads", str(threads), "--seconds", str(seconds), "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["windows_per_second"]


def pipeline(model, name, batch, stages, cores, windows):
    length, layout = WINDOWS[name]
    hop = 1
    per_pass = SENSORS * ((SAMPLES - length) // hop + 1)
    return {
        "name": f"{name}-{cores}", "cores": cores,
        "model": {"path": model},
        "source": {"type": "recording", "path": RECORDING, "rate": "max", "repeat": max(1, math.ceil(windows / per_pass))},
        "window": {"length": length, "hop": hop, "layout": layout},
        "batching": {"max_size": batch, "max_delay_ms": 5},
        "stages": stages,
        "rebalance": {"policy": "off"},
        "controller": {"heartbeat_ms": 100},
        "sink": {"type": "jsonl", "path": "/dev/null"},
    }


def layer_count(binary, config, folder):
    """How many layers Sluice cuts the model into (`sluice plan`'s layer table)."""
    import yaml
    path = os.path.join(folder, "layers.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(dict(config, stages={"count": 1}), f)
    out = subprocess.run([binary, "plan", path], capture_output=True, text=True, check=True).stdout.splitlines()
    table = out[out.index(next(l for l in out if l.startswith("layer"))) + 1:]
    return len([l for l in table[:table.index("")]])


def plan_of(report):
    parts = []
    for stage, replicas in zip(report["stages"], report["replicas"]):
        parts.append(stage["layers"] + (f"×{replicas}" if replicas > 1 else ""))
    return ",".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=None, help="a built sluice (default: build release)")
    parser.add_argument("--models", default="mlp,transformer")
    parser.add_argument("--cores", default="4,8")
    parser.add_argument("--batch", type=int, default=16, help="micro-batch size, for every runtime")
    parser.add_argument("--seconds", type=float, default=8, help="about how long each measurement runs")
    parser.add_argument("--models-dir", default=None, help="where make_models.py wrote the models (default: build them)")
    args = parser.parse_args()

    binary = release_binary(args.binary)
    with tempfile.TemporaryDirectory() as folder:
        models = args.models_dir or folder
        if not args.models_dir:
            subprocess.run([sys.executable, os.path.join(HERE, "make_models.py"), models], check=True, stdout=subprocess.DEVNULL)
        print(f"cpus {os.cpu_count()}, micro-batch {args.batch}, windows/s (pipelines: windows/s at the sink, steady part of the run)")
        print(f"{'model':<12} {'N':>3} {'ort 1 thr':>10} {'ort N thr':>10} {'sluice N thr':>12} {'N stages':>10} {'planned':>10}"
              f"  {'planned/ort':>11} {'N stages/ort':>12}  plan")
        for name in args.models.split(","):
            model = os.path.join(models, name + ".onnx")
            single = ort_rate(model, args.batch, 1, args.seconds / 2)
            for cores in [int(c) for c in args.cores.split(",")]:
                ort = ort_rate(model, args.batch, cores, args.seconds)
                threaded = sluice_rate(binary, model, args.batch, cores, args.seconds)
                windows = ort * args.seconds * 1.5
                stages = min(cores, layer_count(binary, pipeline(model, name, args.batch, {}, cores, 0), folder))
                hand = run(binary, pipeline(model, name, args.batch, {"count": stages}, cores, windows), folder, f"{name}-{cores}-stages")
                planned = run(binary, pipeline(model, name, args.batch, {"count": "auto"}, cores, windows), folder, f"{name}-{cores}-planned")
                hand_rate, planned_rate = steady_rate(hand), steady_rate(planned)
                print(f"{name:<12} {cores:>3} {single:>10.0f} {ort:>10.0f} {threaded:>12.0f} {hand_rate:>10.0f} {planned_rate:>10.0f}"
                      f"  {planned_rate / ort:>11.2f} {hand_rate / ort:>12.2f}  {plan_of(planned)}", flush=True)


if __name__ == "__main__":
    main()
