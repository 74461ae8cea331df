#!/usr/bin/env python3
"""Mutated sensor messages into a live `sluice run` source: it must take them all and live.

    python3 tools/fuzz_sensors.py [--count 20000] [--sensors 20000] [--seed 1] [--sluice .build/debug/sluice]

Starts `sluice run` on a pipeline with a zmq source (the BasicMotions CNN, 6 channels, windows
of 100 samples), then pushes over one PUSH socket, in a seeded random order:
  - --count mutated messages: bytes of a valid header replaced; keys set to hostile values
    (1e308, -1e308, NaN as a string, 2^63-1, -1, 0, null, lists, objects); t0 and dt that make
    the last sample time overflow; payloads of the wrong size, missing, or 4 MiB and more; one,
    two or five frames; random bytes; invalid UTF-8; end-of-stream messages of other senders;
  - chunks from --sensors distinct new sensor ids (the source's sensor table must stay bounded:
    `max_sensors` and `sensor_idle_s` in docs/protocol.md);
  - interleaved with them, the proper chunks of one sensor, "steady" (the first message of
    all), whose windows must all come out (240 samples: 3 windows of 100 at hop 50).
Then the end of stream. Passes when the run exits 0, the steady sensor's 3 windows are in the
output, the source reported its drops, and its resident memory (read from /proc while the run
is up) grew by less than --max-growth-mb.

The suite runs a short fixed-seed version in Swift against a real source process
(Tests/SluiceCLITests/HostileInputTests.swift) and at the decoding unit
(Tests/SluiceProtocolTests/HostileSensorTests.swift).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import zmq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTILE = [1e308, -1e308, "nan", 9223372036854775807, -9223372036854775808, -1, 0, None, [], {}, "x", True, 1.5,
           4611686018427387904, 1e-320, "\u0000", "\u001b[2J"]


def pipeline(port, max_sensors, idle):
    return """model:
  path: {root}/pipelines/models/basicmotions-cnn.onnx
source:
  type: zmq
  endpoint: tcp://127.0.0.1:{port}
  channels: 6
  idle_timeout_s: 5
  max_sensors: {max_sensors}
  sensor_idle_s: {idle}
window:
  length: 100
  hop: 50
batching:
  max_size: 8
  max_delay_ms: 20
stages:
  count: 2
transport:
  kind: tcp
  base_port: {base}
sink:
  type: jsonl
  path: "-"
""".format(root=ROOT, port=port, base=port - 10, max_sensors=max_sensors, idle=idle)


def header(sensor, t0=0.0, dt=0.1, count=10, **extra):
    h = {"v": 1, "sender": "fuzz", "sensor": sensor, "t0": t0, "dt": dt, "channels": 6, "count": count}
    h.update(extra)
    return h


def mutated(rng):
    """One hostile message as a list of frames."""
    kind = rng.randrange(8)
    h = header("m%d" % rng.randrange(50), count=rng.choice([1, 2, 10]))
    payload = bytes(h["count"] * 24)
    if kind == 0:
        raw = bytearray(json.dumps(h).encode())
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return [bytes(raw), payload]
    if kind == 1:
        h[rng.choice(list(h))] = rng.choice(HOSTILE)
        return [json.dumps(h).encode(), payload]
    if kind == 2:
        h["t0"], h["dt"], h["count"] = rng.choice([(1e308, 1e307, 10), (-1e308, 1e308, 3), (0, 1.7e308, 3), (1e308, 0.0, 2)])
        return [json.dumps(h).encode(), bytes(h["count"] * 24)]
    if kind == 3:
        return [json.dumps(h).encode(), bytes(rng.choice([0, 1, len(payload) - 1, len(payload) + 4, 5 << 20]))]
    if kind == 4:
        return [json.dumps(h).encode()] + [payload] * rng.choice([0, 2, 4])
    if kind == 5:
        return [os.urandom(rng.randrange(1, 200)), os.urandom(rng.randrange(0, 64))]
    if kind == 6:
        return [b"\xff\xfe" + json.dumps(h).encode(), payload]
    return [json.dumps({"v": 1, "eos": True, "sender": rng.choice(["other", "", "m1"]), "chunks": rng.choice([0, -1, 10 ** 9])}).encode()]


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def source_pid(run_pid):
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                args = f.read().split(b"\0")
            with open("/proc/%s/stat" % entry) as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if parent == run_pid and len(args) > 1 and args[1] == b"source":
            return int(entry)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=20000, help="mutated messages")
    ap.add_argument("--sensors", type=int, default=20000, help="distinct new sensor ids")
    ap.add_argument("--max-sensors", type=int, default=1000)
    ap.add_argument("--sensor-idle-s", type=float, default=60)
    ap.add_argument("--max-growth-mb", type=float, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--port", type=int, default=6455)
    ap.add_argument("--sluice", default=os.path.join(ROOT, ".build", "debug", "sluice"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    folder = tempfile.mkdtemp(prefix="sluice-fuzz-sensors-")
    path = os.path.join(folder, "live.yaml")
    with open(path, "w") as f:
        f.write(pipeline(args.port, args.max_sensors, args.sensor_idle_s))
    out = open(os.path.join(folder, "stdout"), "w+")
    err = open(os.path.join(folder, "stderr"), "w+")
    run = subprocess.Popen([args.sluice, "run", path], stdout=out, stderr=err)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, 100000)
    sock.setsockopt(zmq.LINGER, 10000)
    sock.connect("tcp://127.0.0.1:%d" % args.port)
    start = time.monotonic()
    source = None
    while source is None and time.monotonic() - start < 30:
        time.sleep(0.2)
        source = source_pid(run.pid)
    time.sleep(1)
    rss_start = rss_kb(source) if source else None
    rss_peak = rss_start or 0
    steady = 0
    events = ["mutated"] * args.count + ["sensor"] * args.sensors + ["steady"] * 23
    rng.shuffle(events)
    # The steady sensor is live before the table fills: it must never be refused.
    events.insert(0, "steady")
    new_id = 0
    # libzmq cuts the connection of a sender whose message is over the source's limit (4 MiB),
    # losing what that connection still had queued: oversized messages go on a socket of their own.
    oversize = ctx.socket(zmq.PUSH)
    oversize.setsockopt(zmq.LINGER, 0)
    oversize.connect("tcp://127.0.0.1:%d" % args.port)
    for index, event in enumerate(events):
        if event == "mutated":
            frames = mutated(rng)
            (oversize if sum(len(f) for f in frames) > 4 << 20 else sock).send_multipart(frames)
        elif event == "sensor":
            # No sender: each new sensor is its own sender too, which the source must bound as well.
            h = header("id-%06d-%s" % (new_id, "x" * 40))
            del h["sender"]
            sock.send_multipart([json.dumps(h).encode(), bytes(240)])
            new_id += 1
        else:
            sock.send_multipart([json.dumps(header("steady", t0=steady * 1.0)).encode(), bytes(240)])
            steady += 1
        if index % 2000 == 0 and source:
            rss_peak = max(rss_peak, rss_kb(source) or 0)
    time.sleep(2)
    if source:
        rss_peak = max(rss_peak, rss_kb(source) or 0)
    sock.send(json.dumps({"v": 1, "eos": True, "sender": "fuzz"}).encode())
    sock.close()
    oversize.close()
    ctx.term()
    try:
        status = run.wait(timeout=300)
    except subprocess.TimeoutExpired:
        run.kill()
        status = "killed after 300 s"
    elapsed = time.monotonic() - start
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read(), err.read()
    windows = [l for l in stdout.splitlines() if '"sensor":"steady"' in l]
    growth = (rss_peak - rss_start) / 1024 if rss_start else float("nan")
    print("seed %d: %d mutated messages, %d new sensor ids, %d steady chunks in %.1f s; exit %s; steady windows %d; "
          "source RSS %s MB at start, peak growth %.1f MB" % (args.seed, args.count, args.sensors, steady, elapsed, status,
                                                              len(windows), rss_start and rss_start // 1024, growth))
    for line in stderr.splitlines():
        if line.strip().startswith("dropped") or "evicted" in line:
            print("  " + line.strip()[:300])
    failures = []
    if status != 0:
        failures.append("the run exited %s:\n%s" % (status, stderr[-2000:]))
    if len(windows) != 3:
        failures.append("%d windows of the steady sensor, expected 3" % len(windows))
    if growth == growth and growth > args.max_growth_mb:
        failures.append("the source grew by %.1f MB" % growth)
    for failure in failures:
        print("FAIL " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
