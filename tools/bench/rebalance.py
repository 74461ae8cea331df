#!/usr/bin/env python3
"""Live rebalancing benchmark: how close does the controller get to the offline optimum, how fast?

Runs pipelines/rebalance-demo.yaml (or --pipeline) three times in one go, with the release build:
  1. the deliberately bad initial split, rebalancing off;
  2. the same start with rebalancing on (auto);
  3. the offline-optimal split for the costs run 2 measured, rebalancing off.
and prints throughput of each, the ratio of (2) after convergence to (3), the time to converge,
and each stage's resident memory before and after.

  python3 tools/bench/rebalance.py [--pipeline FILE] [--repeat N] [--binary PATH]
"""
import argparse
import json
import os
import subprocess
import tempfile

import yaml

from common import ROOT, load_pipeline, release_binary, run


def optimal_split(binary, config, folder, report):
    """The offline optimum for the measured costs, from `sluice plan --measurements`."""
    path = os.path.join(folder, "plan.yaml")
    measurements = os.path.join(folder, "measurements.json")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    with open(measurements, "w") as f:
        json.dump(report, f)
    out = subprocess.run([binary, "plan", path, "--measurements", measurements], capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("optimal"))
    return line.split()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default=os.path.join(ROOT, "pipelines", "rebalance-demo.yaml"))
    parser.add_argument("--repeat", type=int, default=None, help="override source.repeat")
    parser.add_argument("--binary", default=None, help="a built sluice (default: build release)")
    args = parser.parse_args()

    binary = release_binary(args.binary)
    base = load_pipeline(args.pipeline)
    if args.repeat:
        base["source"]["repeat"] = args.repeat
    initial = base["stages"]["split"]

    with tempfile.TemporaryDirectory() as folder:
        off = dict(base, rebalance={"policy": "off"})
        bad = run(binary, off, folder, "initial")
        auto = run(binary, dict(base, rebalance=dict(base.get("rebalance", {}), policy="auto")), folder, "auto")
        best = optimal_split(binary, off, folder, auto)
        optimum = run(binary, dict(off, stages=dict(base["stages"], split=best.split(","))), folder, "optimal")

    moves = [r for r in auto["rebalances"] if r["applied"]]
    converged = moves[-1]["atSeconds"] if moves else 0.0
    after = moves[-1].get("measuredAfterSamplesPerSecond") if moves else None
    rate = {name: r["windowsPerSecond"] for name, r in [("initial", bad), ("auto", auto), ("optimal", optimum)]}

    print(f"pipeline {os.path.relpath(args.pipeline, ROOT)}, {auto['windowsOut']} windows per run, cpus {os.cpu_count()}")
    print(f"{'run':<10} {'split':<14} {'windows/s':>10}")
    print(f"{'initial':<10} {','.join(initial):<14} {rate['initial']:>10.0f}")
    print(f"{'auto':<10} {auto['split']:<14} {rate['auto']:>10.0f}   (whole run, moves included)")
    print(f"{'optimal':<10} {best:<14} {rate['optimal']:>10.0f}")
    for move in moves:
        print(f"  move at {move['atSeconds']:.2f} s: {move['oldSplit']} -> {move['newSplit']}, predicted "
              f"{move['predictedOldSamplesPerSecond']:.0f} -> {move['predictedNewSamplesPerSecond']:.0f}, measured "
              f"{move.get('measuredBeforeSamplesPerSecond') or float('nan'):.0f} -> {move.get('measuredAfterSamplesPerSecond') or float('nan'):.0f} samples/s")
    print(f"converged {converged:.2f} s after start to {auto['split']} ({'the' if auto['split'] == best else 'not the'} offline optimum)")
    if after:
        print(f"after convergence: {after:.0f} windows/s = {100 * after / rate['optimal']:.0f}% of the optimal split's {rate['optimal']:.0f}")
    print(f"auto / optimal, whole run: {rate['auto'] / rate['optimal']:.2f}; auto / initial: {rate['auto'] / rate['initial']:.2f}")
    print("resident memory per stage (MiB), start -> end of the auto run:")
    for stage in auto["stages"]:
        print(f"  stage {stage['stage']} layers {stage['layers']:<6} {stage['residentBytesAtStart'] / 2**20:6.1f} -> {stage['residentBytes'] / 2**20:6.1f}")


if __name__ == "__main__":
    main()
