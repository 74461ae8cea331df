#!/usr/bin/env python3
"""Profiling overhead: throughput with profiling on (per-layer timings, per-batch timestamps,
trace sampling) against off (each stage runs its whole range in one call), side by side.

Runs the pipeline alternately on and off, --rounds times each, and prints the median
windows/s of each and their ratio (the goal: on >= 97% of off), and the stages' compute time per
micro-batch both ways, which shows the cost on the hot path itself.

  python3 tools/bench/profiling_overhead.py [--pipeline FILE] [--rounds N] [--repeat N] [--binary PATH]
"""
import argparse
import os
import statistics
import tempfile

from common import ROOT, load_pipeline, release_binary, run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default=os.path.join(ROOT, "pipelines", "imu-mlp-3stage.yaml"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=10, help="source.repeat, so each run lasts a few seconds")
    parser.add_argument("--binary", default=None, help="a built sluice (default: build release)")
    args = parser.parse_args()

    binary = release_binary(args.binary)
    base = load_pipeline(args.pipeline)
    base["source"]["repeat"] = args.repeat
    base["rebalance"] = {"policy": "off"}
    rates = {True: [], False: []}
    # Compute time per micro-batch summed over the stages: what profiling adds to the hot path,
    # far less sensitive to scheduling noise than end-to-end throughput on a shared machine.
    busy = {True: [], False: []}
    with tempfile.TemporaryDirectory() as folder:
        for round_index in range(args.rounds):
            for profiling in (True, False):
                config = dict(base, controller=dict(base.get("controller", {}), profiling=profiling))
                report = run(binary, config, folder, f"{'on' if profiling else 'off'}-{round_index}")
                rates[profiling].append(report["windowsPerSecond"])
                busy[profiling].append(sum(1000 * stage["busySeconds"] / max(stage["batches"], 1) for stage in report["stages"]))
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    print(f"pipeline {os.path.relpath(args.pipeline, ROOT)}, repeat {args.repeat}, {args.rounds} rounds alternating, cpus {os.cpu_count()}")
    print(f"profiling on : median {on:8.0f} windows/s  (runs: {', '.join(f'{r:.0f}' for r in rates[True])})")
    print(f"profiling off: median {off:8.0f} windows/s  (runs: {', '.join(f'{r:.0f}' for r in rates[False])})")
    print(f"on / off = {on / off:.3f} (throughput)")
    busy_on, busy_off = statistics.median(busy[True]), statistics.median(busy[False])
    print(f"stage compute per micro-batch, summed over stages: on {busy_on:.3f} ms, off {busy_off:.3f} ms, off / on = {busy_off / busy_on:.3f}")


if __name__ == "__main__":
    main()
