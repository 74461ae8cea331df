#!/usr/bin/env python3
"""Measure onnxruntime on a model the way `sluice bench` measures Sluice: random inputs shaped
as declared (the first symbolic dimension is the batch), warm-up for a tenth of the time (at
least 3 runs), then repeated runs; one JSON object per batch size on stdout.

Usage: ort_bench.py MODEL --batch 1,8,32 [--threads 1] [--seconds 2]
"""
import argparse
import json
import time

import numpy as np
import onnxruntime as ort

TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
         "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


def inputs_for(session, batch, rng):
    feed = {}
    for info in session.get_inputs():
        first = True
        shape = []
        for d in info.shape:
            if isinstance(d, int):
                shape.append(d)
            else:
                shape.append(batch if first else 1)
                first = False
        dtype = TYPES[info.type]
        feed[info.name] = rng.uniform(-1, 1, shape).astype(dtype) if dtype in (np.float32, np.float64) else np.zeros(shape, dtype)
    return feed


def measure(run, seconds):
    warm_until = time.perf_counter() + seconds / 10
    runs = 0
    while runs < 3 or time.perf_counter() < warm_until:
        run()
        runs += 1
    latencies = []
    start = last = time.perf_counter()
    while last < start + seconds or len(latencies) < 3:
        run()
        now = time.perf_counter()
        latencies.append(now - last)
        last = now
    latencies.sort()
    pick = lambda p: latencies[min(len(latencies) - 1, int(len(latencies) * p))]
    return len(latencies), last - start, pick(0.5), pick(0.99)


def session(model, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--batch", default="1,8,32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=2)
    args = parser.parse_args()
    sess = session(args.model, args.threads)
    rng = np.random.default_rng(0)
    for batch in [int(b) for b in args.batch.split(",")]:
        feed = inputs_for(sess, batch, rng)
        runs, seconds, p50, p99 = measure(lambda: sess.run(None, feed), args.seconds)
        print(json.dumps({"batch": batch, "runs": runs, "windows_per_second": batch * runs / seconds,
                          "p50_ms": p50 * 1e3, "p99_ms": p99 * 1e3, "threads": args.threads}), flush=True)


if __name__ == "__main__":
    main()
