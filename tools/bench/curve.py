#!/usr/bin/env python3
"""What CURVE costs: throughput with every link encrypted and authenticated, against the same
links in plaintext, measured side by side in one run.

  1. Raw libzmq (through pyzmq): PUSH to PULL between two processes over loopback tcp, 64 KiB
     messages, plaintext and then CURVE.
  2. Sluice: a pipeline of two stage processes over loopback tcp whose batches are 64 KiB (one
     window of 16384 floats each, a model of two elementwise layers and a mean, so the links and
     not the compute set the pace), with transport.curve off and then on.

Each figure is printed with its ratio (CURVE ÷ plaintext); the goal for Sluice is ≥ 0.9.

  python3 tools/bench/curve.py [--messages N] [--windows N] [--repeat N] [--binary PATH]
"""
import argparse
import multiprocessing
import os
import tempfile
import time

import numpy as np
import onnx
import yaml
import zmq
from onnx import TensorProto, helper

from common import release_binary, run

WINDOW = 16384  # floats: 64 KiB


def receive(endpoint, count, server_secret, ready):
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    if server_secret:
        pull.curve_server = True
        pull.curve_secretkey = server_secret
    pull.bind(endpoint)
    ready.set()
    for _ in range(count):
        pull.recv(copy=False)
    pull.close(linger=0)
    context.term()


def raw(count, curve):
    """Messages per second of 64 KiB, PUSH→PULL across two processes."""
    endpoint = "tcp://127.0.0.1:%d" % (23000 + os.getpid() % 1000)
    server_public, server_secret = zmq.curve_keypair() if curve else (None, None)
    ready = multiprocessing.Event()
    receiver = multiprocessing.Process(target=receive, args=(endpoint, count, server_secret, ready))
    receiver.start()
    ready.wait()
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    if curve:
        push.curve_publickey, push.curve_secretkey = zmq.curve_keypair()
        push.curve_serverkey = server_public
    push.connect(endpoint)
    payload = os.urandom(WINDOW * 4)
    push.send(payload)  # the connection is up before the clock starts
    start = time.perf_counter()
    for _ in range(count - 1):
        push.send(payload, copy=False)
    receiver.join()
    elapsed = time.perf_counter() - start
    push.close(linger=0)
    context.term()
    return (count - 1) / elapsed


def pipeline(folder, windows):
    """A two-stage pipeline over 64 KiB windows, as a config dict."""
    x = helper.make_tensor_value_info("window", TensorProto.FLOAT, ["N", WINDOW])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 1])
    # The last layer reduces each window to one number: the sink's JSON would otherwise cost
    # more than the links this measures.
    graph = helper.make_graph([helper.make_node("Relu", ["window"], ["h"]), helper.make_node("Neg", ["h"], ["g"]),
                               helper.make_node("ReduceMean", ["g"], ["scores"], axes=[1], keepdims=1)],
                              "links", [x], [y])
    model = os.path.join(folder, "links.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    rows = os.path.join(folder, "rows.npy")
    np.save(rows, np.random.default_rng(1).standard_normal((windows, WINDOW), dtype=np.float32))
    return {
        "name": "curve-bench",
        "model": {"path": model},
        "source": {"type": "tensors", "path": rows},
        "batching": {"max_size": 1, "max_delay_ms": 1},
        "stages": {"count": 2},
        "transport": {"kind": "tcp", "base_port": 7600},
        "sink": {"type": "jsonl", "path": "/dev/null"},
        "controller": {"profiling": "off"},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--windows", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--binary")
    args = parser.parse_args()
    binary = release_binary(args.binary)

    plain = max(raw(args.messages, False) for _ in range(args.repeat))
    secured = max(raw(args.messages, True) for _ in range(args.repeat))
    print(f"libzmq  64 KiB messages/s   plaintext {plain:9.0f}   CURVE {secured:9.0f}   CURVE/plaintext {secured / plain:.2f}")

    with tempfile.TemporaryDirectory() as folder:
        config = pipeline(folder, args.windows)
        rates = {}
        for curve in ["off", "on"]:
            config["transport"]["curve"] = curve
            rates[curve] = max(run(binary, config, folder, f"curve-{curve}-{i}")["windowsPerSecond"] for i in range(args.repeat))
        print(f"sluice  64 KiB batches/s    plaintext {rates['off']:9.0f}   CURVE {rates['on']:9.0f}   CURVE/plaintext {rates['on'] / rates['off']:.2f}"
              f"   (2 stage processes; 2 of 3 tcp hops carry 64 KiB)")


if __name__ == "__main__":
    main()
