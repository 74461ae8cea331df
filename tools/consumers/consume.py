#!/usr/bin/env python3
"""Reads predictions from a Sluice `zmq` sink and prints them as JSON lines, each window once.

Each message from the sink holds one or more whole batches' predictions, one JSON object per
line, with "batch_seq" and "window_seq". After a reconnect (or a sink started in place of a
dead one) windows already printed may come again: they are dropped by window_seq.

Example:
  python3 tools/consumers/consume.py tcp://127.0.0.1:5800 --key keys/consumer.key \
      --server-key keys/predictions.pub --windows 72 > predictions.jsonl
"""
import argparse
import json
import sys

import zmq


def read_key(path, field):
    """The Z85 key in a `sluice keys` file: a line `field = "..."`."""
    with open(path, encoding="ascii") as handle:
        for line in handle:
            name, _, value = line.partition("=")
            if name.strip() == field:
                return value.strip().strip('"').encode("ascii")
    sys.exit(f"{path}: no {field}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("endpoint", help="where the sink binds (sink.endpoint)")
    parser.add_argument("--pattern", choices=["push", "pub"], default="push", help="the sink's sink.pattern")
    parser.add_argument("--key", help="this consumer's key pair (a .key file from `sluice keys`), for a CURVE sink")
    parser.add_argument("--server-key", help="the sink's public key (the .pub of its sink.key)")
    parser.add_argument("--windows", type=int, help="stop after printing this many windows")
    parser.add_argument("--idle-s", type=float, default=30, help="stop after this long without a message")
    args = parser.parse_args()

    context = zmq.Context()
    socket = context.socket(zmq.PULL if args.pattern == "push" else zmq.SUB)
    if args.pattern == "pub":
        socket.setsockopt(zmq.SUBSCRIBE, b"")
    if args.key or args.server_key:
        if not (args.key and args.server_key):
            sys.exit("--key and --server-key go together")
        socket.curve_publickey = read_key(args.key, "public-key")
        socket.curve_secretkey = read_key(args.key, "secret-key")
        socket.curve_serverkey = read_key(args.server_key, "public-key")
    socket.connect(args.endpoint)

    next_window = 0
    printed = 0
    while args.windows is None or printed < args.windows:
        if not socket.poll(int(args.idle_s * 1000)):
            print(f"consume: no message for {args.idle_s} s; stopping after {printed} windows", file=sys.stderr)
            break
        for line in socket.recv().decode("utf-8").splitlines():
            window = json.loads(line)["window_seq"]
            if window < next_window:
                continue  # already printed: sent again after a reconnect or a sink restart
            next_window = window + 1
            print(line)
            printed += 1
    sys.stdout.flush()
    socket.close(linger=0)
    context.term()


if __name__ == "__main__":
    main()
