#!/usr/bin/env python3
"""Fuzz every socket of a running Sluice pipeline with random and mutated frames.

    python3 tools/fuzz_sockets.py [--frames 100000] [--seed 1] [--sluice .build/debug/sluice]

Runs the same live-sensor pipeline twice with `sluice run`: once clean, once while
one thread per socket sends --frames random or mutated multipart messages into it:
the controller's ROUTER (from DEALERs with random identities), each stage's PULL,
the sink's PULL and the source's sensor PULL. Templates are valid messages (a
heartbeat and a hello, a batch numbered far past any real one with the cursor each
hop accepts, a sensor chunk whose payload is the wrong size) so that mutants get
past the first checks. Meanwhile a real sender replays the BasicMotions recording
(all sensors from one socket, as tools/sensor_sim.py does) and ends its stream.

Checks: the fuzzed run exits 0 with outcome completed, every role process lives to
the end (no crash), and every prediction of the clean run is in the fuzzed run's
output with the same scores (window keys match; fuzz-made windows, if a mutant
happens to be a valid chunk, are reported apart). Prints a table of frames sent
per socket and what each process counted as dropped, for docs/protocol.md.

The short, fixed-seed version of this runs in the test suite
(Tests/SluiceCLITests/ClaimsTests.swift, fuzzedFramesOnEverySocket...).
"""
import argparse
import csv
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import zmq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSV = os.path.join(ROOT, "pipelines/data/basicmotions-test.csv")
MODEL = os.path.join(ROOT, "pipelines/models/basicmotions-cnn.onnx")
LAYERS = 8  # layers of basicmotions-cnn.onnx as Sluice cuts it
FAR = 0xFFFF_FFFF_FF00_0000  # batch sequence no real run reaches; mutants keep some high bytes


def pipeline(base, sensor_port, output):
    return f"""model:
  path: {MODEL}
source:
  type: zmq
  endpoint: tcp://127.0.0.1:{sensor_port}
  channels: 6
  idle_timeout_s: 60
window:
  length: 100
  hop: 50
stages:
  count: 2
transport:
  kind: tcp
  base_port: {base}
  # In plaintext, so the fuzzed frames reach the decoders as a process of the run gone bad
  # would send them; under CURVE they are refused at the handshake.
  curve: off
sink:
  type: jsonl
  path: {output}
"""


def chunks():
    rows = {}
    with open(CSV, newline="") as f:
        for r in csv.DictReader(f):
            rows.setdefault(r["sensor"], []).append(r)
    out = []
    for sensor, rs in rows.items():
        for a in range(0, len(rs), 10):
            part = rs[a:a + 10]
            x = np.array([[float(r[c]) for c in r if c not in ("sensor", "t", "label")] for r in part], dtype="<f4")
            head = {"v": 1, "sensor": sensor, "t0": float(part[0]["t"]), "dt": 0.1, "channels": 6,
                    "count": len(part), "sender": "replay", "labels": [r["label"] for r in part]}
            out.append((float(part[-1]["t"]), [json.dumps(head).encode(), x.tobytes()]))
    out.sort(key=lambda c: c[0])
    return [frames for _, frames in out]


def batch_frames(cursor, batch_seq):
    created = time.time_ns()
    name = b"window"
    fixed = struct.pack("<4sBBHQQIIHBBQ", b"SLB1", 1, 0, 0, batch_seq, 0, 1, 1, cursor, 0, 1, created)
    desc = struct.pack("<H", len(name)) + name + struct.pack("<BB", 1, 3) + struct.pack("<3q", 1, 6, 100)
    meta = json.dumps([{"sensor": "fuzz", "start": 0}]).encode()
    return [fixed + desc, meta, np.full(600, 0.5, dtype="<f4").tobytes()]


def mutate(rng, template):
    if rng.random() < 0.1:
        return [rng.randbytes(rng.randint(0, 200)) for _ in range(rng.randint(1, 3))]
    frames = [bytearray(f) for f in template]
    for _ in range(rng.randint(1, 4)):
        if not frames:
            frames = [bytearray(rng.randbytes(8))]
            continue
        i = rng.randrange(len(frames))
        if not frames[i]:
            frames[i] = bytearray(rng.randbytes(4))
        op = rng.randrange(8)
        if op <= 2:
            j = rng.randrange(len(frames[i]))
            frames[i][j] ^= 1 << rng.randrange(8)
        elif op == 3:
            frames[i][rng.randrange(len(frames[i]))] = rng.choice([0, 0xFF, 0x7F, 0x80, 0x22, 0x7B])
        elif op == 4:
            frames[i] = frames[i][:rng.randint(0, len(frames[i]))]
        elif op == 5:
            frames[i] += rng.randbytes(rng.randint(1, 16))
        elif op == 6:
            del frames[i]
        else:
            frames.insert(i, bytearray(frames[i]))
    return [bytes(f) for f in frames] or [b""]


def fuzz(ctx, kind, endpoint, templates, count, seed, sent, stop, end_of_stream=None):
    rng = random.Random(seed)
    if kind == "dealer":
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, b"fuzz-%d" % rng.randrange(1 << 30))
    else:
        sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 30000)  # every message counted as sent is delivered before close
    sock.setsockopt(zmq.SNDHWM, 1000)
    sock.connect(endpoint)
    n = 0
    while n < count and not stop.is_set():
        message = mutate(rng, rng.choice(templates))
        try:
            sock.send_multipart(message, flags=zmq.NOBLOCK)
            n += 1
        except zmq.Again:
            time.sleep(0.0005)
        if kind == "dealer":
            try:
                while True:
                    sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                pass
    if end_of_stream is not None:
        # Mutants of a chunk can be valid and start a sender named "fuzz": end it, as a sender does.
        sock.send(end_of_stream)
    sent[endpoint] = n
    sock.close()


def run(sluice, base, frames_per_socket, seed, workdir, label):
    sensor_port = base + 9
    output = os.path.join(workdir, label + ".jsonl")
    report = os.path.join(workdir, label + "-report.json")
    path = os.path.join(workdir, label + ".yaml")
    with open(path, "w") as f:
        f.write(pipeline(base, sensor_port, output))
    err = open(os.path.join(workdir, label + ".stderr"), "w+")
    proc = subprocess.Popen([sluice, "run", path, "--report", report], stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.time() + 60
    while time.time() < deadline:
        err.flush()
        with open(err.name) as e:
            if "starting the source" in e.read():
                break
        time.sleep(0.05)
    ctx = zmq.Context(io_threads=2)
    sent, stop, threads = {}, threading.Event(), []
    started = time.time()
    if frames_per_socket > 0:
        heartbeat = json.dumps({"type": "heartbeat", "body": {}}).encode()
        hello = json.dumps({"type": "hello", "body": {"role": "stage", "name": "stage-0", "pid": 1, "host": "fuzz"}}).encode()
        targets = [("dealer", "tcp://127.0.0.1:%d" % base, [[heartbeat], [hello], [b"{}"]]),
                   ("push", "tcp://127.0.0.1:%d" % (base + 1), [batch_frames(0, FAR)]),
                   ("push", "tcp://127.0.0.1:%d" % (base + 2), [batch_frames(3, FAR)]),
                   ("push", "tcp://127.0.0.1:%d" % (base + 3), [batch_frames(LAYERS, FAR)]),
                   ("push", "tcp://127.0.0.1:%d" % sensor_port,
                    [[json.dumps({"v": 1, "sensor": "fuzz", "sender": "fuzz", "t0": 0, "dt": 0.1, "channels": 6,
                                  "count": 3}).encode(), bytes(1000)]])]
        for i, (kind, endpoint, templates) in enumerate(targets):
            eos = json.dumps({"v": 1, "eos": True, "sender": "fuzz"}).encode() if endpoint.endswith(":%d" % sensor_port) else None
            t = threading.Thread(target=fuzz, args=(ctx, kind, endpoint, templates, frames_per_socket, seed * 100 + i, sent, stop, eos))
            t.start()
            threads.append(t)
    # The real sensors, while the garbage flows.
    real = ctx.socket(zmq.PUSH)
    real.setsockopt(zmq.LINGER, 10000)
    real.connect("tcp://127.0.0.1:%d" % sensor_port)
    messages = chunks()
    for i, message in enumerate(messages):
        real.send_multipart(message)
        if threads and i % 40 == 0:
            time.sleep(0.05)  # spread the real stream over the fuzzing
    # Should the run end early (a crash), the fuzzers stop rather than wait on a peer that is gone.
    while any(t.is_alive() for t in threads):
        if proc.poll() is not None:
            stop.set()
        time.sleep(0.1)
    real.send(json.dumps({"v": 1, "eos": True, "sender": "replay", "chunks": len(messages)}).encode())
    real.close()
    ctx.term()
    try:
        status = proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        status = "hung"
    elapsed = time.time() - started
    rows = {}
    if os.path.exists(output):
        for line in open(output):
            o = json.loads(line)
            rows["%s@%s" % (o["sensor"], o["window_start"])] = o["scores"]
    summary = json.load(open(report)) if os.path.exists(report) else {}
    err.seek(0)
    return status, rows, summary, sent, elapsed, err.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100000, help="messages per socket")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sluice", default=os.path.join(ROOT, ".build/debug/sluice"))
    ap.add_argument("--base-port", type=int, default=7100)
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="sluice-fuzz-")
    status, clean, _, _, _, _ = run(args.sluice, args.base_port, 0, args.seed, workdir, "clean")
    if status != 0 or not clean:
        sys.exit("the clean run failed (status %s); see %s" % (status, workdir))
    status, fuzzed, report, sent, elapsed, stderr = run(args.sluice, args.base_port + 20, args.frames, args.seed, workdir, "fuzzed")
    missing = [k for k in clean if k not in fuzzed]
    changed = [k for k in clean if k in fuzzed and not np.allclose(clean[k], fuzzed[k], rtol=1e-6, atol=1e-7)]
    extra = [k for k in fuzzed if k not in clean]
    crashed = [line for line in stderr.splitlines() if "exited" in line or "signal" in line or "Fatal" in line]
    print("seed %d, %.1f s, exit status %s, outcome %s" % (args.seed, elapsed, status, report.get("outcome")))
    print("| socket | messages sent |")
    print("|---|---:|")
    for endpoint, n in sorted(sent.items()):
        print("| %s | %d |" % (endpoint, n))
    print("\n| process | dropped |")
    print("|---|---|")
    for role, counts in sorted((report.get("dropped") or {}).items()):
        print("| %s | %s |" % (role, ", ".join("%d %s %s" % (e["count"], e["unit"], e["reason"]) for e in counts["entries"])))
    print("\nclean windows %d; fuzzed run: missing %d, changed %d, extra (fuzz-made) %d; warning lines %d; crash lines %d"
          % (len(clean), len(missing), len(changed), len(extra), stderr.count("dropped"), len(crashed)))
    ok = status == 0 and report.get("outcome") == "completed" and not missing and not changed and not crashed
    print("PASS" if ok else "FAIL (logs in %s)" % workdir)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
