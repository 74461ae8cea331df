#!/usr/bin/env python3
"""Mutated pipeline files through `sluice validate`: it must never crash, and every
message about a bad file must name the file and a line.

    python3 tools/fuzz_configs.py [--count 10000] [--seed 1] [--sluice .build/debug/sluice]

Each case is one of pipelines/*.yaml (model and data paths made absolute) with one to
three line- or byte-level mutations: lines dropped, doubled (duplicate keys), reindented,
swapped or cut; values replaced by hostile ones (huge and negative integers, 1e308, NaN,
control characters, anchors, tags); characters replaced by any ASCII byte. Files go to
`sluice validate` in groups of 50 (one process each); a group that crashes is rerun file by
file to name the file that did. A crash is any exit other than 0, 2 (invalid file) or 3
(model cannot be loaded), or death by a signal. Every line of stderr must start with
`sluice: error: FILE:LINE:` or `FILE:LINE:`, or name the model that cannot be loaded
(`sluice: error: MODEL: ...`).

Prints the counts and exits 1 when any case failed; failing files are kept in --keep.
The suite runs a short fixed-seed version of the same mutations in Swift
(Tests/SluiceConfigTests/HostileConfigTests.swift).
"""
import argparse
import glob
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

VALUES = ["0", "-1", "1e308", "-1e308", ".nan", ".inf", "9223372036854775807", "9223372036854775808",
          "-9223372036854775808", "1099511627776", '""', "[]", "{}", "~", "auto", '"0-9223372036854775807"',
          '["0-1", "2-1"]', '["9223372036854775806-9223372036854775807"]', "&a x", "*a", "!!binary AAAA",
          '"\\u0000"', '"\\e[2J"', "0x7fffffffffffffff", "1_000", "yes", '"a\\nb"', "4611686018427387904",
          "100000000000", "7", "channels_last", "tcp://127.0.0.1:1", "ipc:///tmp/x", "1e-300", "0.0001x"]


def bases():
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "pipelines", "*.yaml"))):
        text = open(path).read()
        text = re.sub(r"(path:\s*)(models|data)/", lambda m: m.group(1) + os.path.join(ROOT, "pipelines", m.group(2)) + "/", text)
        out.append(text)
    return out


def mutate(rng, text):
    lines = text.split("\n")
    for _ in range(rng.randint(1, 3)):
        if not lines:
            lines = [""]
        i = rng.randrange(len(lines))
        kind = rng.randrange(10)
        if kind == 0:
            del lines[i]
        elif kind == 1:
            lines.insert(i, lines[i])
        elif kind == 2 and ":" in lines[i]:
            lines[i] = lines[i][: lines[i].index(":") + 1] + " " + rng.choice(VALUES)
        elif kind == 3:
            lines[i] = "  " + lines[i]
        elif kind == 4:
            lines[i] = lines[i][2:]
        elif kind == 5 and lines[i]:
            j = rng.randrange(len(lines[i]))
            lines[i] = lines[i][:j] + chr(rng.randrange(128)) + lines[i][j + 1:]
        elif kind == 6:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == 7:
            lines = lines[:i]
        elif kind == 8:
            lines[i] += rng.choice([":", " #", " [", " {", '"', "'", "\t", " - x", ": y"])
        else:
            key = rng.choice(["stages", "source", "window", "batching", "controller", "sink", "transport"])
            lines.insert(i, "%s:\n  %s: %s" % (key, rng.choice(["count", "length", "channels", "max_size", "heartbeat_ms",
                                                                 "max_sensors", "split", "replicas"]), rng.choice(VALUES)))
    return "\n".join(lines)


LOCATED = re.compile(r"^(sluice: error: )?(?P<file>[^:]+\.yaml):\d+: ")
# A model that cannot be loaded (exit 3) is named by its own path: the file given as model.path.
MODEL = re.compile(r"^sluice: error: (?P<path>/[^:]+): ")


def problems(result):
    """What is wrong with one validate run (empty when nothing is)."""
    if result.returncode not in (0, 2, 3):
        return ["exit %d (a crash or a signal)" % result.returncode]
    for line in result.stderr.splitlines():
        model = MODEL.match(line)
        if line.strip() and not LOCATED.match(line) and not (model and not model.group("path").endswith(".yaml")):
            return ["a message without FILE:LINE: %r" % line[:200]]
    return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sluice", default=os.path.join(ROOT, ".build", "debug", "sluice"))
    ap.add_argument("--group", type=int, default=50)
    ap.add_argument("--keep", default="fuzz-configs-failures")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    texts = bases()
    work = tempfile.mkdtemp(prefix="sluice-fuzz-configs-")
    counts = {"cases": 0, "valid": 0, "rejected": 0, "crashes": 0, "unlocated": 0}
    failures = []
    try:
        done = 0
        while done < args.count:
            group = []
            for k in range(min(args.group, args.count - done)):
                path = os.path.join(work, "case-%06d.yaml" % (done + k))
                with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
                    f.write(mutate(rng, rng.choice(texts)))
                group.append(path)
            done += len(group)
            counts["cases"] += len(group)
            result = subprocess.run([args.sluice, "validate"] + group, capture_output=True, text=True, errors="replace", timeout=600)
            if not problems(result):
                valid = result.stdout.count(": valid:")
                counts["valid"] += valid
                counts["rejected"] += len(group) - valid
                continue
            # Something is wrong in this group: one process per file names the case.
            for path in group:
                one = subprocess.run([args.sluice, "validate", path], capture_output=True, text=True, errors="replace", timeout=120)
                found = problems(one)
                counts["valid" if one.returncode == 0 else "rejected"] += 1
                if found:
                    counts["crashes" if found[0].startswith("exit") else "unlocated"] += 1
                    failures.append((path, found[0], one.stderr[-600:]))
        print("seed %d: %s" % (args.seed, ", ".join("%s %d" % kv for kv in counts.items())))
        if failures:
            os.makedirs(args.keep, exist_ok=True)
            for path, problem, stderr in failures[:50]:
                shutil.copy(path, args.keep)
                print("FAIL %s: %s\n  %s" % (os.path.basename(path), problem, stderr.strip().replace("\n", "\n  ")))
            return 1
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
