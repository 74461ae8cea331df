#!/usr/bin/env python3
"""Live rebalancing benchmark: how close does the controller get to the offline optimum, how
fast, and does the stream keep its pace while layers move?

Runs pipelines/rebalance-demo.yaml (or --pipeline) three times in one go, with the release build:
  1. the deliberately bad initial split, rebalancing off;
  2. the same start with rebalancing on (auto);
  3. the offline-optimal plan for the costs run 2 measured, rebalancing off.
With --cores above the stage count, run 2 may add replicas from the spare cores, and run 3 is
the optimal split *and replicas* for that budget (`sluice plan --cores`).

It prints each run's steady throughput, the time to converge, the auto run's throughput during
each move against the initial plan's, the auto run after convergence against the optimum, and
each stage's resident memory before and after.

  python3 tools/bench/rebalance.py [--pipeline FILE] [--repeat N] [--cores N] [--warmup S] [--binary PATH]
"""
import argparse
import json
import os
import subprocess
import tempfile

import yaml

from common import ROOT, load_pipeline, release_binary, run


def optimal_stages(binary, config, folder, report, cores):
    """The offline optimum for the measured costs: `sluice plan --measurements [--cores]`."""
    path = os.path.join(folder, "plan.yaml")
    measurements = os.path.join(folder, "measurements.json")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    with open(measurements, "w") as f:
        json.dump(report, f)
    command = [binary, "plan", path, "--measurements", measurements]
    if cores > config["stages"]["count"]:
        out = subprocess.run(command + ["--cores", str(cores)], capture_output=True, text=True, check=True).stdout
        line = next(l for l in out.splitlines() if l.strip().startswith("as stages:"))
        stages = yaml.safe_load(line.split("as stages:", 1)[1])
        return {key: value for key, value in stages.items() if value}
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("optimal"))
    return {"count": config["stages"]["count"], "split": line.split()[1].split(",")}


def rate(timeline, start, end):
    """Windows per second the sink released between two times on the controller's clock."""
    def at(t):
        # Linear between the samples around t.
        for (t0, s0), (t1, s1) in zip(timeline, timeline[1:]):
            if t0 <= t <= t1:
                return s0 + (s1 - s0) * (t - t0) / (t1 - t0) if t1 > t0 else s1
        return timeline[-1][1] if t > timeline[-1][0] else timeline[0][1]
    return (at(end) - at(start)) / (end - start) if end > start else float("nan")


def steady_window(report, after=None):
    """From `after` (default: one second into the run, or a fifth of a shorter one) to when 95%
    of the windows were out: the rate without the start-up and the drain."""
    timeline = report["sinkTimeline"]
    total = timeline[-1][1]
    end = next((t for t, s in timeline if s >= 0.95 * total), timeline[-1][0])
    started = report["startedAtSeconds"]
    start = started + min(1.0, 0.2 * (end - started)) if after is None else after
    return start, end


def steady_rate(report, after=None):
    start, end = steady_window(report, after)
    return rate(report["sinkTimeline"], start, end)


def slowest_interval(timeline, start, end, width=0.25):
    """The lowest rate over any `width`-second interval inside [start, end]."""
    points = [t for t, _ in timeline if start <= t <= end - width]
    rates = [rate(timeline, t, t + width) for t in points]
    return min(rates) if rates else rate(timeline, start, end)


def describe(stages):
    split = ",".join(stages["split"])
    replicas = stages.get("replicas") or {}
    return split + "".join(f" s{k}×{v}" for k, v in sorted(replicas.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default=os.path.join(ROOT, "pipelines", "rebalance-demo.yaml"))
    parser.add_argument("--repeat", type=int, default=None, help="override source.repeat")
    parser.add_argument("--cores", type=int, default=None, help="core budget (default: one per stage, so only layers move)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds the initial split runs before the first move")
    parser.add_argument("--binary", default=None, help="a built sluice (default: build release)")
    args = parser.parse_args()

    binary = release_binary(args.binary)
    base = load_pipeline(args.pipeline)
    if args.repeat:
        base["source"]["repeat"] = args.repeat
    cores = args.cores or base["stages"]["count"]
    base["cores"] = cores
    base["controller"] = dict(base.get("controller", {}), heartbeat_ms=100)
    initial = {"count": base["stages"]["count"], "split": base["stages"]["split"]}

    with tempfile.TemporaryDirectory() as folder:
        off = dict(base, rebalance={"policy": "off"})
        bad = run(binary, off, folder, "initial")
        auto = run(binary, dict(base, rebalance=dict(base.get("rebalance", {}), policy="auto", warmup_s=args.warmup)), folder, "auto")
        best = optimal_stages(binary, off, folder, auto, cores)
        optimum = run(binary, dict(off, stages=dict(base["stages"], **best)), folder, "optimal")

    moves = [r for r in auto["rebalances"] if r["applied"]]
    started = auto["startedAtSeconds"]
    converged = (moves[-1].get("settledAtSeconds") or moves[-1]["atSeconds"]) if moves else started
    rates = {"initial": steady_rate(bad), "optimal": steady_rate(optimum),
             "auto": steady_rate(auto), "auto after convergence": steady_rate(auto, after=converged + 0.25)}
    final = {"split": list(auto["split"]), "replicas": {i: r for i, r in enumerate(auto["replicas"]) if r > 1}}

    print(f"pipeline {os.path.relpath(args.pipeline, ROOT)}, {auto['windowsOut']} windows per run, "
          f"{cores} cores for stages, cpus {os.cpu_count()}; steady windows/s = from 1 s in to 95% of the windows out")
    print(f"{'run':<24} {'plan':<28} {'windows/s':>10}")
    print(f"{'initial':<24} {describe(initial):<28} {rates['initial']:>10.0f}")
    if moves:
        print(f"{'auto before first move':<24} {describe(initial):<28} {rate(auto['sinkTimeline'], started + 1, moves[0]['atSeconds']):>10.0f}"
              f"   (the initial plan for {args.warmup:.0f} s of warm-up)")
    print(f"{'auto (whole run)':<24} {describe(final):<28} {rates['auto']:>10.0f}")
    print(f"{'auto after convergence':<24} {describe(final):<28} {rates['auto after convergence']:>10.0f}")
    print(f"{'optimal':<24} {describe(best):<28} {rates['optimal']:>10.0f}")
    timeline = auto["sinkTimeline"]
    for move in moves:
        settled = move.get("settledAtSeconds") or move["atSeconds"]
        # The move itself takes a tenth of a second or so: judge the half second from its start,
        # which covers it, against the old plan's steady rate.
        span = max(settled, move["atSeconds"] + 0.5)
        during = rate(timeline, move["atSeconds"], span)
        slowest = slowest_interval(timeline, move["atSeconds"], span)
        old = move.get("oldReplicas")
        new = move.get("newReplicas")
        print(f"  move at {move['atSeconds'] - started:.2f} s, settled at {settled - started:.2f} s: {','.join(move['oldSplit'])}"
              f"{' ' + str(old) if old else ''} -> {','.join(move['newSplit'])}{' ' + str(new) if new else ''}, predicted "
              f"{move['predictedOldWindowsPerSecond']:.0f} -> {move['predictedNewWindowsPerSecond']:.0f} windows/s")
        print(f"    from the move's start for {span - move['atSeconds']:.2f} s: {during:.0f} windows/s (slowest 0.25 s: {slowest:.0f})"
              f" = {during / rates['initial']:.2f} × the initial plan's steady rate (slowest: {slowest / rates['initial']:.2f} ×)")
    print(f"converged {converged - started:.2f} s after start ({args.warmup:.0f} s of it warm-up on the initial plan)")
    after = rates["auto after convergence"] / rates["optimal"]
    print(f"after convergence: {100 * after:.0f}% of the optimal plan's rate "
          f"({'within' if converged - started <= 10 else 'NOT within'} 10 s of start; goal 95%)")
    print(f"auto / initial, whole run: {rates['auto'] / rates['initial']:.2f}")
    print("resident memory per stage (MiB), start -> end of the auto run:")
    for stage in auto["stages"]:
        print(f"  stage {stage['index']} layers {stage['layers']:<6} {stage['residentBytesAtStart'] / 2**20:6.1f} -> {stage['residentBytes'] / 2**20:6.1f}")


if __name__ == "__main__":
    main()
