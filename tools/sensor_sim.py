#!/usr/bin/env python3
"""Replay a sensor recording (CSV) into Sluice over ZeroMQ, as live sensors would.

    python3 tools/sensor_sim.py --endpoint tcp://127.0.0.1:5555 \\
        --csv pipelines/data/basicmotions-test.csv [--speed 1.0] [--chunk 10]

CSV: columns `sensor`, `t` (seconds), one column per channel, and optionally
`label`. Each sensor's samples are cut into chunks of --chunk consecutive
samples. A chunk is sent when its last sample has been recorded, i.e. at
(t_last - t_start) / speed seconds after the start (--speed 1 = real time,
--speed 0 = as fast as possible); chunks of all sensors go out in that time
order (ties by sensor order in the file).

A PUSH socket connects to --endpoint (the Sluice source binds PULL). Each
chunk is one two-frame message, Sluice's live-sensor format:
  frame 0: UTF-8 JSON {"v": 1, "sensor": "imu-3", "t0": 12.5, "dt": 0.1,
           "channels": 6, "count": 10, "labels": ["Walking", ...]}
           t0 = time of the chunk's first sample (s), dt = sample period (s),
           labels (one per sample) only when the CSV has a label column.
  frame 1: count * channels float32 little-endian, sample-major.
Every chunk names this process as its sender ("sender": --sender, default
sensor_sim-PID). After the data: one single-frame end of stream,
{"v": 1, "eos": true, "sender": ..., "chunks": N}; it ends only this sender's
input (the source ends its input once every sender it heard from has ended),
and N lets the source count chunks that never arrived. Then the socket closes,
lingering up to --linger-ms for queued messages to go out.

--socket-per-sensor sends each sensor's chunks from its own socket, as
separate devices would, each with its own end of stream (sender = sensor id).
"""
import argparse
import csv
import json
import os
import sys
import time

import numpy as np
import zmq


def load(path):
    """Return (channel names, has_labels, {sensor: (t [T], x float32 [T, C], labels)})."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        if "sensor" not in cols or "t" not in cols:
            sys.exit("%s: need columns 'sensor' and 't', got %s" % (path, cols))
        channels = [c for c in cols if c not in ("sensor", "t", "label")]
        has_labels = "label" in cols
        rows = {}
        for r in reader:
            rows.setdefault(r["sensor"], []).append(r)
    sensors = {}
    for s, rs in rows.items():
        rs.sort(key=lambda r: float(r["t"]))
        t = np.array([float(r["t"]) for r in rs])
        x = np.array([[float(r[c]) for c in channels] for r in rs], dtype="<f4")
        labels = [r["label"] for r in rs] if has_labels else None
        sensors[s] = (t, x, labels)
    return channels, has_labels, sensors


def make_chunks(sensors, chunk):
    """List of (send_time, sensor_order, sensor, start, stop), in send order."""
    out = []
    for order, (s, (t, _, _)) in enumerate(sensors.items()):
        for a in range(0, len(t), chunk):
            b = min(a + chunk, len(t))
            out.append((t[b - 1], order, s, a, b))
    out.sort(key=lambda c: (c[0], c[1]))
    return out


def sample_period(t):
    if len(t) < 2:
        return 0.0
    return float("%.9g" % np.median(np.diff(t)))


def read_key(path, field):
    """The Z85 key in a `sluice keys` file: a line `field = "..."`."""
    with open(path, encoding="ascii") as handle:
        for line in handle:
            name, _, value = line.partition("=")
            if name.strip() == field:
                return value.strip().strip('"').encode("ascii")
    sys.exit(f"{path}: no {field}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    ap.add_argument("--csv", default="pipelines/data/basicmotions-test.csv")
    ap.add_argument("--speed", type=float, default=1.0,
                    help="time scale: 1 = real time, 10 = ten times faster, 0 = no waiting")
    ap.add_argument("--chunk", type=int, default=10, help="samples per message")
    ap.add_argument("--sndhwm", type=int, default=1000, help="ZMQ_SNDHWM (messages)")
    ap.add_argument("--linger-ms", type=int, default=2000, help="ZMQ_LINGER on close")
    ap.add_argument("--sender", default="sensor_sim-%d" % os.getpid(), help="sender name in chunks and end of stream")
    ap.add_argument("--key", help="this sender's key pair (a `sluice keys` .key file), for a source with source.key")
    ap.add_argument("--server-key", help="the source's public key (the .pub of its source.key); goes with --key")
    ap.add_argument("--socket-per-sensor", action="store_true",
                    help="one PUSH socket per sensor, each ending its own stream (sender = sensor id)")
    args = ap.parse_args()
    if args.chunk < 1 or args.speed < 0:
        ap.error("--chunk must be >= 1 and --speed >= 0")

    channels, has_labels, sensors = load(args.csv)
    chunks = make_chunks(sensors, args.chunk)
    periods = {s: sample_period(t) for s, (t, _, _) in sensors.items()}
    t_start = min(t[0] for t, _, _ in sensors.values()) if sensors else 0.0

    if bool(args.key) != bool(args.server_key):
        ap.error("--key and --server-key go together")
    ctx = zmq.Context(io_threads=1)

    def open_socket():
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, args.linger_ms)
        sock.setsockopt(zmq.SNDHWM, args.sndhwm)
        if args.key:
            sock.curve_publickey = read_key(args.key, "public-key")
            sock.curve_secretkey = read_key(args.key, "secret-key")
            sock.curve_serverkey = read_key(args.server_key, "public-key")
        sock.connect(args.endpoint)
        return sock

    if args.socket_per_sensor:
        sockets = {s: open_socket() for s in sensors}
        sender_of = {s: s for s in sensors}
    else:
        shared = open_socket()
        sockets = {s: shared for s in sensors}
        sender_of = {s: args.sender for s in sensors}
    sent_by = {}

    n_msgs = n_samples = 0
    start = time.monotonic()
    try:
        for send_t, _, s, a, b in chunks:
            if args.speed > 0:
                delay = start + (send_t - t_start) / args.speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            t, x, labels = sensors[s]
            head = {"v": 1, "sensor": s, "t0": float(t[a]), "dt": periods[s],
                    "channels": len(channels), "count": b - a, "sender": sender_of[s]}
            if has_labels:
                head["labels"] = labels[a:b]
            sockets[s].send_multipart([json.dumps(head, separators=(",", ":")).encode(),
                                       np.ascontiguousarray(x[a:b]).tobytes()])
            sent_by[sender_of[s]] = sent_by.get(sender_of[s], 0) + 1
            n_msgs += 1
            n_samples += b - a
        ended = set()
        for s in sensors:
            if sender_of[s] in ended:
                continue
            ended.add(sender_of[s])
            eos = {"v": 1, "eos": True, "sender": sender_of[s], "chunks": sent_by.get(sender_of[s], 0)}
            sockets[s].send(json.dumps(eos, separators=(",", ":")).encode())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        for sock in set(sockets.values()):
            sock.close()  # waits up to --linger-ms for queued messages
        ctx.term()
    elapsed = time.monotonic() - start
    print("sent %d messages, %d samples from %d sensors (%d channels) to %s in %.2f s"
          " (%.0f samples/s) + eos" % (n_msgs, n_samples, len(sensors), len(channels),
                                       args.endpoint, elapsed,
                                       n_samples / elapsed if elapsed > 0 else 0.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
