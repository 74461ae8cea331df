#!/usr/bin/env python3
"""Kill Sluice processes at random under a steady load, and measure what it costs.

    python3 tools/chaos.py --short
    python3 tools/chaos.py --duration 60 --every 5 --replicas --seed 7 --json chaos.json

A chaos test that is also a benchmark. It writes its own pipeline (the BasicMotions CNN over
three stage processes, the BasicMotions test recording replayed at --speed times real time, so
the load is steady and known), runs it once without chaos in a single stage process at full
speed (the reference), then runs it under `sluice run` and, every --every seconds for
--duration seconds, kills one random process of the kinds in --roles with SIGKILL.

While the chaos run goes it samples the predictions file's line count every 20 ms and every
process's resident memory every second. Afterwards it prints:

  - each kill: when, which role and pid, the gap (kill -> first new output line), the stall
    (longest pause in the output within 2 s of the kill), recovered (kill -> the 1 s output
    throughput back at >= 90% of the 3 s before the kill), and what the run's log said;
  - the outputs against the reference, by window_seq: lost, duplicated, out of order,
    differing (other keys, or scores beyond the tolerance the test suite uses), and how many
    lines were byte-identical;
  - resident memory per role (first, last, max), the run's exit status and its summary.

Exit status 0 only when the run exited 0, nothing was lost, duplicated, out of order, differing
or unparseable, no process or run folder was left behind, and at least one kill was made.

Role kinds for --roles: stage (a process named stage-N), replica (stage-N.M, M >= 1), source,
sink, controller. A kind the sluice under test does not recover makes the run fail, and this
tool then reports failure.
"""
import argparse
import array
import bisect
import csv
import json
import math
import mmap
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "pipelines/models/basicmotions-cnn.onnx")
RECORDING = os.path.join(ROOT, "pipelines/data/basicmotions-test.csv")
DEFAULT_SLUICE = os.path.join(ROOT, ".build/debug/sluice")

ROLE_KINDS = ("stage", "replica", "source", "sink", "controller")
WINDOW_LENGTH = 100
WINDOW_HOP = 5
# Measured on the 2-core development machine (docs/chaos.md): at 150x the stages are about a
# third busy and the pipeline's throughput is a third of what it reaches at rate: max, so a
# restart and its replay have room to catch up.
DEFAULT_SPEED = 150.0
# After the kills stop, the stream runs on this long so the last kill's recovery can be seen.
TAIL_S = 3.0
OUTPUT_SAMPLE_S = 0.02
RSS_SAMPLE_S = 1.0
PRE_KILL_WINDOW_S = 3.0
THROUGHPUT_WINDOW_S = 1.0
RECOVERED_FRACTION = 0.9
# A dip caused by a kill shows in the trailing 1 s throughput within this long of the kill.
DIP_SEARCH_S = 2.0
STALL_WINDOW_S = 2.0
# Samples further apart than this near a kill (the tool was not scheduled) are flagged.
COARSE_SAMPLING_MS = 60
# The tolerance the test suite holds a split run to against one process (PipelineTests).
SCORE_RTOL = 1e-5
SCORE_ATOL = 1e-7
READY_TIMEOUT_S = 60.0
# A process of the run still alive this long after `sluice run` exited was left behind.
EXIT_GRACE_S = 0.5
DRAIN_AFTER_SIGINT_S = 60.0
LOG_KEYWORDS = re.compile(r"died|restart|again|replay|exit|failed|silent|stopped responding|lost")


class ToolError(Exception):
    """A problem to report in one line, without a traceback."""


# ---------------------------------------------------------------------------------------------
# The pipeline


def recording_facts(path):
    """Sensors, sample rate and one pass's length of the CSV recording (what the source uses
    to shift each repeat later)."""
    times, sensors = [], set()
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                sensors.add(row["sensor"])
                times.append(float(row["t"]))
    except (OSError, KeyError, ValueError) as error:
        raise ToolError(f"cannot read the recording {path}: {error}")
    distinct = sorted(set(times))
    if len(distinct) < 2 or not sensors:
        raise ToolError(f"the recording {path} has fewer than two sample times")
    step = min(b - a for a, b in zip(distinct, distinct[1:]))
    return {"sensors": len(sensors), "sample_period_s": step, "pass_s": distinct[-1] - distinct[0] + step}


def pipeline_yaml(name, rate, repeat, stage_count, replicas, predictions):
    """The pipeline, keys as docs/protocol.md and README.md name them. Paths are written as
    JSON strings, which YAML reads as they are, whatever characters they hold."""
    replicas_line = f"\n  replicas: {{1: {replicas}}}" if replicas > 1 else ""
    return f"""# Written by tools/chaos.py.
name: {name}
model:
  path: {json.dumps(MODEL)}
source:
  type: recording
  path: {json.dumps(RECORDING)}
  rate: {rate}
  repeat: {repeat}
window:
  length: {WINDOW_LENGTH}
  hop: {WINDOW_HOP}
batching:
  max_size: 4
  max_delay_ms: 20
stages:
  count: {stage_count}{replicas_line}
controller:
  heartbeat_ms: 100
  timeout_s: 2
sink:
  type: jsonl
  path: {json.dumps(predictions)}
  # Lines reach the file within 20 ms (default 100), so the gap after a kill is measured finely.
  max_delay_ms: 20
"""


# ---------------------------------------------------------------------------------------------
# The run's processes, found as the test suite finds them: by /proc


def read_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def session_of(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # Fields after the command name (which may hold spaces and parentheses):
            # state ppid pgrp session ...
            return int(f.read().rsplit(b")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def role_of(args):
    """The role name a sluice process runs as: its --name, "controller", or "launcher" for the
    `sluice run` process itself."""
    words = [a.decode(errors="replace") for a in args if a]
    if "--name" in words[:-1]:
        return words[words.index("--name") + 1]
    if len(words) > 1 and words[1] == "controller":
        return "controller"
    if len(words) > 1 and words[1] == "run":
        return "launcher"
    return None


def kind_of(role):
    if role in ("source", "sink", "controller", "launcher"):
        return role
    match = re.fullmatch(r"stage-\d+(?:\.(\d+))?", role)
    if match:
        return "replica" if match.group(1) and int(match.group(1)) >= 1 else "stage"
    return "other"


def run_processes(run_pid):
    """{pid: role} of every live process of the run started as `run_pid`: it was started as a
    session leader, so its whole tree is in session `run_pid`; the run folder in a command line
    catches any process that left the session."""
    markers = (f"/sluice-{run_pid}/".encode(), f"/sluice-{run_pid}-".encode())
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        args = read_cmdline(pid)
        if not args or not args[0]:
            continue  # a zombie or a kernel thread
        if session_of(pid) == run_pid or any(marker in a for a in args for marker in markers):
            found[pid] = role_of(args) or "other"
    return found


def run_directory_of(run_pid):
    """The run folder the controller was given (`sluice-PID`, or `sluice-PID-XXXXXX` when the
    first name was taken), read from its command line."""
    for pid, role in run_processes(run_pid).items():
        words = [a.decode(errors="replace") for a in read_cmdline(pid)]
        if role == "controller" and "--run-directory" in words[:-1]:
            return words[words.index("--run-directory") + 1]
    return None


def remove_run_directory(path):
    """Removes what a run leaves in its folder, as `sluice run` itself does: the ipc sockets,
    then the folder if that empties it. Anything else there stays."""
    try:
        for name in os.listdir(path):
            entry = os.path.join(path, name)
            if name.endswith(".ipc") and stat.S_ISSOCK(os.lstat(entry).st_mode):
                os.unlink(entry)
        os.rmdir(path)
    except OSError:
        pass


def resident_bytes(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return None


def kill_leftovers(run_pid):
    """SIGKILLs whatever of the run is still alive, one pid at a time; returns what it found."""
    left = run_processes(run_pid)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and run_processes(run_pid):
        time.sleep(0.05)
    return left


def clean_up_after(run):
    """Whatever the run left behind once `sluice run` exited, described; processes are killed
    and the run folder's sockets removed, so that nothing outlives this tool. `sluice run`
    makes sure no process of its run outlives it, so any found after a moment is a failure."""
    left_behind = []
    deadline = time.monotonic() + EXIT_GRACE_S
    while run_processes(run.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    leftovers = kill_leftovers(run.pid)
    if leftovers:
        left_behind.append(f"processes alive {EXIT_GRACE_S:g} s after sluice run exited (killed now): "
                           + ", ".join(f"{role} ({pid})" for pid, role in sorted(leftovers.items())))
    if run.directory and os.path.isdir(run.directory):
        remove_run_directory(run.directory)
        left_behind.append(f"run folder {run.directory}"
                           + ("" if os.path.isdir(run.directory) else " (its sockets removed now)"))
    return left_behind


# ---------------------------------------------------------------------------------------------
# Running sluice


class Run:
    """One `sluice run` in a session of its own, its standard error read line by line and
    stamped with the monotonic time it arrived."""

    def __init__(self, sluice, pipeline, report, log_path):
        self.log_lines = []  # (monotonic time, text)
        self.ready = threading.Event()
        self.log_file = open(log_path, "w")
        try:
            self.process = subprocess.Popen(
                [sluice, "run", pipeline, "--report", report],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True)
        except OSError as error:
            self.log_file.close()
            raise ToolError(f"cannot start {sluice}: {error}")
        self.pid = self.process.pid
        self.directory = None
        self.reader = threading.Thread(target=self._read_log, daemon=True)
        self.reader.start()

    def _read_log(self):
        for raw in self.process.stderr:
            text = raw.decode(errors="replace").rstrip("\n")
            self.log_lines.append((time.monotonic(), text))
            self.log_file.write(text + "\n")
            if "all roles ready" in text:
                self.ready.set()
        self.log_file.close()

    def finish(self):
        """Waits for the log to be read to its end once the process has exited."""
        self.reader.join(timeout=10)

    def log_tail(self, count=15):
        return "\n".join("    " + text for _, text in self.log_lines[-count:])


def validate(sluice, pipeline):
    result = subprocess.run([sluice, "validate", pipeline], capture_output=True, text=True)
    if result.returncode != 0:
        raise ToolError(f"sluice validate refused the pipeline it was given ({pipeline}):\n"
                        + (result.stdout + result.stderr).strip())


def read_report(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def summary_lines(log_lines):
    """The run summary's lines that say how it ended, why it failed, and what was recovered."""
    return [text for _, text in log_lines
            if text.startswith("sluice: ") or text.lstrip().startswith(("recovered ", "error ", "unknown "))]


def error_lines(log_lines):
    """The log's errors and warnings (rate-limited by sluice itself), to show why a run failed."""
    return [text for _, text in log_lines if re.match(r"\d\d:\d\d:\d\d\.\d+ \S+ (error|warning)", text)]


def run_reference(sluice, workdir, repeat, name, timeout):
    """The same recording and repeat count at full speed in one stage process, no kills."""
    predictions = os.path.join(workdir, "reference.jsonl")
    pipeline = os.path.join(workdir, "reference.yaml")
    with open(pipeline, "w") as f:
        f.write(pipeline_yaml(name + "-reference", "max", repeat, 1, 1, predictions))
    validate(sluice, pipeline)
    run = Run(sluice, pipeline, os.path.join(workdir, "reference-report.json"),
              os.path.join(workdir, "reference.log"))
    started = time.monotonic()
    try:
        ready = wait_for_ready(run)
        if ready:
            run.directory = run_directory_of(run.pid)
        elif run.process.poll() is None:
            raise ToolError(f"the reference run did not log \"all roles ready\" within {READY_TIMEOUT_S:.0f} s:\n"
                            + run.log_tail())
        try:
            status = run.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ToolError(f"the reference run did not finish within {timeout:.0f} s:\n" + run.log_tail())
    finally:
        left_behind = clean_up_after(run)
    run.finish()
    seconds = time.monotonic() - started
    if not ready:
        raise ToolError(f"the pipeline failed to start (the reference run exited with status {status} "
                        "before it logged \"all roles ready\"):\n" + run.log_tail())
    if status != 0:
        raise ToolError(f"the reference run (one stage process, no kills) failed with status {status}:\n"
                        + run.log_tail())
    if left_behind:
        raise ToolError("the reference run left behind: " + "; ".join(left_behind))
    return predictions, seconds


# ---------------------------------------------------------------------------------------------
# Watching the chaos run


class OutputCounter:
    """Counts the predictions file's lines as they are written."""

    def __init__(self, path):
        self.path = path
        self.fd = None
        self.offset = 0
        self.lines = 0
        self.shrinks = 0

    def count(self):
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return self.lines
        if os.fstat(self.fd).st_size < self.offset:
            # The file got shorter: a sink started in place of a dead one cuts a line the dead
            # one left half written. Only whole lines were counted, so count them again.
            self.shrinks += 1
            self.offset = 0
            self.lines = 0
        while True:
            chunk = os.pread(self.fd, 1 << 20, self.offset)
            if not chunk:
                return self.lines
            self.offset += len(chunk)
            self.lines += chunk.count(b"\n")

    def close(self):
        if self.fd is not None:
            os.close(self.fd)


def choose_victim(run_pid, kinds, rng):
    """A random live process among the allowed kinds, looked up afresh (a restarted stage has
    a new pid); sorted by name first so that a seed gives the same choices."""
    candidates = sorted((role, pid) for pid, role in run_processes(run_pid).items() if kind_of(role) in kinds)
    return rng.choice(candidates) if candidates else None


def watch(run, args, kinds, rng, counter):
    """Kills, samples and stops the run; returns what it saw."""
    if not wait_for_ready(run):
        status = run.process.poll()
        if status is None:
            raise ToolError(f"the run did not log \"all roles ready\" within {READY_TIMEOUT_S:.0f} s:\n" + run.log_tail())
        run.finish()
        raise ToolError(f"the pipeline failed to start (sluice run exited with status {status}):\n" + run.log_tail())
    ready = time.monotonic()
    own_cpu_at_ready = sum(os.times()[:2])
    run.directory = run_directory_of(run.pid)
    samples = [(ready, counter.count())]  # (monotonic time, lines written)
    rss = {}  # role -> [(seconds since ready, pid, bytes)]
    kills = []
    next_sample = ready
    next_rss = ready
    next_kill = ready + args.every
    kills_end = ready + args.duration
    stop_at = ready + args.duration + args.grace
    interrupted_at = None
    forced = False
    while run.process.poll() is None:
        now = time.monotonic()
        samples.append((now, counter.count()))
        if now >= next_rss:
            for pid, role in run_processes(run.pid).items():
                size = resident_bytes(pid)
                if size is not None:
                    rss.setdefault(role, []).append((now - ready, pid, size))
            next_rss = max(next_rss + RSS_SAMPLE_S, now)
        if now >= next_kill and now < kills_end:
            kills.append(kill_one(run, kinds, rng, ready, samples, counter))
            while next_kill <= time.monotonic():
                next_kill += args.every  # on schedule; a slot this loop overslept is not made up
        if interrupted_at is None and now >= stop_at:
            # A stream that outlasts duration + grace is stopped as Ctrl-C would: it drains.
            run.process.send_signal(signal.SIGINT)
            interrupted_at = now
        if interrupted_at is not None and now >= interrupted_at + DRAIN_AFTER_SIGINT_S and not forced:
            kill_leftovers(run.pid)
            forced = True
        # Every 20 ms; after a wait the tool was not scheduled, it goes on from now, not in a burst.
        next_sample = max(next_sample + OUTPUT_SAMPLE_S, time.monotonic())
        time.sleep(max(0.0, next_sample - time.monotonic()))
    # The log is read to its end only after clean_up_after: a process that outlived the
    # launcher holds the log's pipe open, and must be seen alive, not waited for.
    samples.append((time.monotonic(), counter.count()))
    own_cpu_share = (sum(os.times()[:2]) - own_cpu_at_ready) / max(time.monotonic() - ready, 1e-3)
    return {"ready": ready, "samples": samples, "rss": rss, "kills": kills, "ended": time.monotonic(),
            "interrupted": interrupted_at is not None, "forced": forced,
            "own_cpu_percent": round(own_cpu_share * 100, 1)}


def wait_for_ready(run):
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if run.ready.wait(timeout=0.05):
            return True
        if run.process.poll() is not None:
            run.finish()
            return run.ready.is_set()
    return False


def kill_one(run, kinds, rng, ready, samples, counter):
    victim = choose_victim(run.pid, kinds, rng)
    if victim is None:
        return {"at_s": time.monotonic() - ready, "role": None, "pid": None,
                "skipped": "no process of the allowed kinds"}
    role, pid = victim
    # A fresh sample right before the kill, so that no line written before it counts as after.
    killed_at = time.monotonic()
    samples.append((killed_at, counter.count()))
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return {"at_s": killed_at - ready, "role": role, "pid": pid, "skipped": "it had already exited"}
    return {"at_s": killed_at - ready, "monotonic": killed_at, "role": role, "kind": kind_of(role), "pid": pid}


# ---------------------------------------------------------------------------------------------
# What the samples say about each kill


def lines_at(times, counts, t):
    """Lines written by time t (the last sample at or before t)."""
    index = bisect.bisect_right(times, t) - 1
    return counts[index] if index >= 0 else 0


def measure_kill(kill, times, counts, ready, end):
    kill_t = kill["monotonic"]
    since = max(ready, kill_t - PRE_KILL_WINDOW_S)
    pre_rate = (lines_at(times, counts, kill_t) - lines_at(times, counts, since)) / (kill_t - since) \
        if kill_t - since >= 0.5 else None
    before = lines_at(times, counts, kill_t)
    start = bisect.bisect_right(times, kill_t)

    gap_at = next((times[i] for i in range(start, len(times)) if counts[i] > before), None)

    # Longest pause between new lines within STALL_WINDOW_S of the kill.
    stall, last_new, seen = 0.0, kill_t, before
    for i in range(start, len(times)):
        if times[i] > kill_t + STALL_WINDOW_S:
            break
        if counts[i] > seen:
            stall = max(stall, times[i] - last_new)
            last_new, seen = times[i], counts[i]
    stall = max(stall, min(kill_t + STALL_WINDOW_S, end) - last_new)
    if gap_at is None:
        stall = None  # the output never resumed: no pause length to give

    recovered = None
    dipped = False
    if pre_rate:
        threshold = RECOVERED_FRACTION * pre_rate
        trailing = lambda i: (counts[i] - lines_at(times, counts, times[i] - THROUGHPUT_WINDOW_S)) / THROUGHPUT_WINDOW_S
        dip_search_end = bisect.bisect_right(times, kill_t + DIP_SEARCH_S)
        dip = next((i for i in range(start, dip_search_end) if trailing(i) < threshold), None)
        if dip is None:
            # The 1 s throughput never fell below 90%: it was back as soon as output resumed.
            recovered = gap_at
        else:
            dipped = True
            recovered = next((times[i] for i in range(dip, len(times)) if trailing(i) >= threshold), None)
    # This tool shares the CPUs with the run: when it was not scheduled for a while, the figures
    # above are only as fine as its longest wait between two samples, which is reported with them.
    nearby = [t for t in times[max(0, start - 1):] if t <= kill_t + STALL_WINDOW_S]
    longest_sampling_interval = max((b - a for a, b in zip(nearby, nearby[1:])), default=0.0)
    ms = lambda t: None if t is None else round((t - kill_t) * 1000)
    return {"pre_kill_windows_per_s": None if pre_rate is None else round(pre_rate, 1),
            "gap_ms": ms(gap_at), "stall_ms": None if stall is None else round(stall * 1000),
            "recovered_ms": ms(recovered),
            "throughput_dipped": dipped, "longest_sampling_interval_ms": round(longest_sampling_interval * 1000)}


def log_about(kill, next_kill_t, log_lines):
    """What the run's log said between this kill and the next about the victim, or a replay."""
    said = []
    for arrived, text in log_lines:
        if arrived < kill["monotonic"] or arrived >= next_kill_t:
            continue
        stamped = re.match(r"\d\d:\d\d:\d\d\.\d+ (.*)", text)
        if not stamped:
            continue  # the summary and its table, not a log line
        message = stamped.group(1)
        mentions = kill["role"] in message or str(kill["pid"]) in message or "replay" in message
        if mentions and LOG_KEYWORDS.search(message):
            said.append(message)
    return said


def baseline_pause(times, counts, ready, first_kill):
    """Longest pause between new lines with no kill in play (after a 0.5 s warm-up), for
    comparison with the stall after a kill."""
    start, end = ready + 0.5, first_kill
    longest, last_new, seen = 0.0, None, None
    for t, c in zip(times, counts):
        if t < start or t > end:
            continue
        if seen is None:
            last_new, seen = t, c
        elif c > seen:
            longest = max(longest, t - last_new)
            last_new, seen = t, c
    return None if end - start < 0.5 else round(longest * 1000)


# ---------------------------------------------------------------------------------------------
# Comparing with the reference


def window_seq(line):
    """The window_seq of a predictions line: read from its fixed start when it has one."""
    prefix = b'{"window_seq":'
    if line.startswith(prefix):
        end = line.find(b",", len(prefix))
        digits = line[len(prefix):end]
        if end > 0 and digits.isdigit():
            return int(digits)
    try:
        value = json.loads(line).get("window_seq")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def same_prediction(ours, theirs):
    """Equal keys and values, scores within the suite's tolerance; False for anything else."""
    try:
        a, b = json.loads(ours), json.loads(theirs)
    except ValueError:
        return False
    if not isinstance(a, dict) or not isinstance(b, dict) or set(a) != set(b):
        return False
    for key in a:
        if key == "scores":
            x, y = a[key], b[key]
            if not isinstance(x, list) or not isinstance(y, list) or len(x) != len(y):
                return False
            for p, q in zip(x, y):
                if p is None or q is None or isinstance(p, bool) or isinstance(q, bool):
                    if p != q:
                        return False
                elif not isinstance(p, (int, float)) or not isinstance(q, (int, float)) \
                        or abs(p - q) > SCORE_ATOL + SCORE_RTOL * abs(q):
                    return False
        elif a[key] != b[key]:
            return False
    return True


def index_reference(path):
    """Byte offsets of the reference's lines, which must be window_seq 0, 1, 2, … in order."""
    offsets = array.array("q")
    with open(path, "rb") as f:
        position = 0
        for line in f:
            if window_seq(line) != len(offsets):
                raise ToolError(f"the reference output {path} is not window_seq 0, 1, 2, … at line {len(offsets) + 1}")
            offsets.append(position)
            position += len(line)
        offsets.append(position)
    return offsets


def compare(chaos_path, reference_path, whole_stream_expected):
    offsets = index_reference(reference_path)
    total = len(offsets) - 1
    seen = bytearray(total)
    result = {"reference_windows": total, "chaos_lines": 0, "lost": 0, "duplicated": 0, "out_of_order": 0,
              "differing": 0, "unparseable": 0, "unknown_window_seq": 0, "byte_identical": 0,
              "within_tolerance": 0, "examples": []}

    def example(text):
        if len(result["examples"]) < 5:
            result["examples"].append(text)

    highest = -1
    previous = None
    with open(reference_path, "rb") as ref_file, open(chaos_path, "ab+") as chaos:
        # ("ab+": a run that died before its sink opened the file has written nothing.)
        chaos.seek(0)
        reference = mmap.mmap(ref_file.fileno(), 0, access=mmap.ACCESS_READ) if total else b""
        for number, line in enumerate(chaos, 1):
            result["chaos_lines"] += 1
            seq = window_seq(line) if line.endswith(b"\n") else None
            if seq is None:
                result["unparseable"] += 1
                example(f"line {number} is not a complete prediction: {line[:80]!r}")
                continue
            if previous is not None and seq < previous:
                result["out_of_order"] += 1
                example(f"line {number}: window_seq {seq} after {previous}")
            previous = seq
            if seq >= total:
                result["unknown_window_seq"] += 1
                example(f"line {number}: window_seq {seq} is not in the reference ({total} windows)")
                continue
            if seen[seq]:
                result["duplicated"] += 1
                example(f"line {number}: window_seq {seq} again")
                continue
            seen[seq] = 1
            highest = max(highest, seq)
            expected = reference[offsets[seq]:offsets[seq + 1]]
            if line == expected:
                result["byte_identical"] += 1
            elif same_prediction(line, expected):
                result["within_tolerance"] += 1
            else:
                result["differing"] += 1
                example(f"line {number}: window_seq {seq} differs: {line[:100]!r} vs {expected[:100]!r}")
        if total:
            reference.close()
    # A run that completed owes every window; one that stopped early owes a gap-free prefix.
    covered = total if whole_stream_expected else highest + 1
    result["compared_windows"] = covered
    result["not_reached"] = total - covered
    result["lost"] = covered - sum(seen[:covered])
    if result["lost"]:
        first = seen.find(0, 0, covered)
        example(f"lost {result['lost']} of the compared windows, the first window_seq {first}")
    return result


# ---------------------------------------------------------------------------------------------
# Printing


def load_average():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def mib(size):
    return f"{size / (1 << 20):.1f}"


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def print_report(figures):
    print(f"\nkills ({len(figures['kills'])}; gap = kill -> first new line, stall = longest pause "
          f"within {STALL_WINDOW_S:.0f} s, recovered = 1 s throughput back at >= 90% of the 3 s before)")
    print(f"  {'t (s)':>7}  {'role':<11} {'pid':>7}  {'before/s':>8}  {'gap ms':>7}  {'stall ms':>8}  {'recovered ms':>14}")
    show = lambda value: "never" if value is None else str(value)
    coarse = []
    for kill in figures["kills"]:
        if kill.get("skipped"):
            print(f"  {kill['at_s']:7.2f}  {kill['role'] or '-':<11} {kill['pid'] or '-':>7}  skipped: {kill['skipped']}")
            continue
        recovered = show(kill["recovered_ms"]) + ("" if kill["throughput_dipped"] or kill["recovered_ms"] is None else " (no dip)")
        before = "n/a" if kill["pre_kill_windows_per_s"] is None else f"{kill['pre_kill_windows_per_s']:.0f}"
        mark = ""
        if kill["longest_sampling_interval_ms"] > COARSE_SAMPLING_MS:
            coarse.append(kill["longest_sampling_interval_ms"])
            mark = " *"
        print(f"  {kill['at_s']:7.2f}  {kill['role']:<11} {kill['pid']:>7}  {before:>8}  {show(kill['gap_ms']):>7}  "
              f"{show(kill['stall_ms']):>8}  {recovered:>14}{mark}")
        for message in kill["log"][:6]:
            print(f"           log: {message}")
    if coarse:
        print(f"  * this tool waited up to {max(coarse)} ms between two samples near that kill (the CPUs were busy):"
              " its figures are that coarse")
    if figures["baseline_pause_ms"] is not None:
        print(f"  longest pause between new lines before the first kill: {figures['baseline_pause_ms']} ms")
    kills_by_kind = {}
    for kill in figures["kills"]:
        if not kill.get("skipped"):
            kills_by_kind.setdefault(kill["kind"], []).append(kill)
    for kind, kills in sorted(kills_by_kind.items()):
        parts = []
        for key, name in (("gap_ms", "gap"), ("stall_ms", "stall"), ("recovered_ms", "recovered")):
            values = [k[key] for k in kills if k[key] is not None]
            never = len(kills) - len(values)
            if values:
                parts.append(f"{name} median {percentile(values, 0.5)}, max {max(values)}"
                             + (f", never {never}" if never else ""))
            else:
                parts.append(f"{name} never")
        print(f"  {kind} ({len(kills)} kills), ms: " + "; ".join(parts))

    c = figures["comparison"]
    print(f"\noutputs against the reference ({c['reference_windows']} windows, one stage process, no kills)")
    if c["not_reached"]:
        print(f"  the run stopped early: compared the first {c['compared_windows']} windows; "
              f"{c['not_reached']} were not reached")
    print(f"  lines {c['chaos_lines']}: byte-identical {c['byte_identical']}, within tolerance "
          f"(rtol {SCORE_RTOL:g}, atol {SCORE_ATOL:g}) {c['within_tolerance']}")
    print(f"  lost {c['lost']}, duplicated {c['duplicated']}, out of order {c['out_of_order']}, "
          f"differing {c['differing']}, unparseable {c['unparseable']}, not in the reference {c['unknown_window_seq']}")
    for text in c["examples"]:
        print(f"    {text}")

    print("\nresident memory per role (MiB, sampled every second)")
    print(f"  {'role':<11} {'kind':<10} {'pids':>4}  {'first':>7}  {'last':>7}  {'max':>7}")
    for role, entry in sorted(figures["rss"].items()):
        print(f"  {role:<11} {entry['kind']:<10} {entry['pids']:>4}  {mib(entry['first']):>7}  "
              f"{mib(entry['last']):>7}  {mib(entry['max']):>7}")

    run = figures["run"]
    if run["predictions_file_shrank"]:
        print(f"\n(the predictions file got shorter {run['predictions_file_shrank']} times while it was sampled:"
              " a restarted sink cut a half-written line)")
    print(f"\nrun: exit status {run['exit_status']}"
          + (", stopped with SIGINT after duration + grace" if run["interrupted"] else "")
          + (", killed: it did not stop within 60 s of SIGINT" if run["forced"] else ""))
    for line in run["summary"] or ["(no summary line in the log)"]:
        print(f"  {line}")
    if not figures["passed"] and run["errors"]:
        print("  the run's errors and warnings:")
        for line in run["errors"][:30]:
            print(f"    {line}")
        if len(run["errors"]) > 30:
            print(f"    … {len(run['errors']) - 30} more (--keep keeps the whole log)")
    if run["report_recovery"] is not None:
        print(f"  report: outcome {run['report_outcome']}, recovery {json.dumps(run['report_recovery'])}")
    for text in figures["left_behind"]:
        print(f"  left behind: {text}")
    print(f"  this tool used {run['watcher_cpu_percent']}% of a core while it watched the run")
    print(f"  load average at the start {figures['load_average']['start']}, at the end {figures['load_average']['end']}")
    print(f"\n{'PASS' if figures['passed'] else 'FAIL'}: " + "; ".join(figures["verdict"]))
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------------


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  python3 tools/chaos.py --short                       # 8 s, a kill every 2 s (the test suite's)
  python3 tools/chaos.py --duration 60 --every 5 --replicas --seed 7 --json chaos.json
  python3 tools/chaos.py --roles stage,replica --short  # stage processes only

Exit status 0 only when the run exited 0, no output was lost, duplicated, out of order or
differing, nothing was left behind, and at least one kill was made; 1 otherwise.""")
    parser.add_argument("--sluice", default=DEFAULT_SLUICE, help="the sluice binary (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of kills (default: %(default)g)")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between kills (default: %(default)g)")
    parser.add_argument("--short", action="store_true", help="duration 8 s, a kill every 2 s: for the test suite")
    parser.add_argument("--roles", default="stage,replica,source,sink,controller",
                        help=f"kinds to kill, comma-separated from {', '.join(ROLE_KINDS)} (default: %(default)s)")
    parser.add_argument("--replicas", type=int, nargs="?", const=2, default=1,
                        help="run stage 1 as this many processes (default without the option: 1; alone: 2)")
    parser.add_argument("--speed", type=float, default=DEFAULT_SPEED,
                        help="replay the recording at this many times real time (default: %(default)g)")
    parser.add_argument("--grace", type=float, default=30.0,
                        help="seconds after --duration before a stream still running is stopped with SIGINT (default: %(default)g)")
    parser.add_argument("--seed", type=int, help="seed of the random choice of victims (default: a random one, printed)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON to FILE")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (pipelines, outputs, logs)")
    args = parser.parse_args(argv)
    if args.short:
        args.duration, args.every = 8.0, 2.0
    kinds = [k.strip() for k in args.roles.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in ROLE_KINDS]
    if unknown or not kinds:
        parser.error(f"--roles: unknown kind {', '.join(unknown) or '(none given)'}; choose from {', '.join(ROLE_KINDS)}")
    if not (args.duration > 0 and args.every > 0 and math.isfinite(args.duration) and math.isfinite(args.every)):
        parser.error("--duration and --every must be positive")
    if args.every >= args.duration:
        parser.error("--every must be shorter than --duration, or no kill is made")
    if args.replicas < 1 or args.replicas > 16:
        parser.error("--replicas must be between 1 and 16")
    if not (0 < args.speed <= 10000) or args.grace < 0:
        parser.error("--speed must be in (0, 10000] and --grace not negative")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    args.kinds = kinds
    return args


def main(argv):
    args = parse_arguments(argv)
    sluice = os.path.abspath(args.sluice)
    if not os.path.isfile(sluice) or not os.access(sluice, os.X_OK):
        raise ToolError(f"no sluice binary at {sluice}: build it (swift build) or give --sluice PATH")
    for path in (MODEL, RECORDING):
        if not os.path.isfile(path):
            raise ToolError(f"{path} is missing: this tool runs from a Sluice checkout")
    facts = recording_facts(RECORDING)
    # The stream outlasts the kills by TAIL_S so the last kill's recovery can be measured.
    repeat = math.ceil((args.duration + TAIL_S) * args.speed / facts["pass_s"])
    steady_rate = facts["sensors"] / facts["sample_period_s"] * args.speed / WINDOW_HOP

    load_at_start = load_average()
    workdir = tempfile.mkdtemp(prefix="sluice-chaos-")
    run = None
    try:
        print(f"chaos: {args.duration:g} s of kills, one every {args.every:g} s among {','.join(args.kinds)}, "
              f"seed {args.seed}; 3 stages{f', stage 1 in {args.replicas} processes' if args.replicas > 1 else ''}; "
              f"recording at {args.speed:g}x ({steady_rate:.0f} windows/s), repeat {repeat}")
        print(f"chaos: load average {load_at_start} (other work on this machine skews the figures)")
        print(f"chaos: work folder {workdir}{'' if args.keep else ' (removed at the end; --keep keeps it)'}")
        sys.stdout.flush()

        chaos_pipeline = os.path.join(workdir, "chaos.yaml")
        chaos_output = os.path.join(workdir, "chaos.jsonl")
        with open(chaos_pipeline, "w") as f:
            f.write(pipeline_yaml("chaos", f'"{args.speed:g}x"', repeat, 3, args.replicas, chaos_output))
        validate(sluice, chaos_pipeline)

        print(f"chaos: reference run: the same {repeat} passes at rate max in one stage process, no kills")
        sys.stdout.flush()
        # The reference runs at rate max, several times faster than the chaos run's pace; half
        # that pace is allowed before it counts as stuck.
        reference_output, reference_seconds = run_reference(sluice, workdir, repeat, "chaos",
                                                            timeout=READY_TIMEOUT_S + 2 * (args.duration + TAIL_S))
        print(f"chaos: reference run done in {reference_seconds:.1f} s; chaos run for about "
              f"{args.duration + TAIL_S:g} s after its roles are ready")
        sys.stdout.flush()

        counter = OutputCounter(chaos_output)
        report_path = os.path.join(workdir, "report.json")
        run = Run(sluice, chaos_pipeline, report_path, os.path.join(workdir, "chaos.log"))
        try:
            seen = watch(run, args, args.kinds, random.Random(args.seed), counter)
        finally:
            counter.close()

        left_behind = clean_up_after(run)
        run.finish()

        times = [t for t, _ in seen["samples"]]
        counts = [c for _, c in seen["samples"]]
        kill_times = [k["monotonic"] for k in seen["kills"] if "monotonic" in k] + [math.inf]
        for kill in seen["kills"]:
            if kill.get("skipped"):
                continue
            kill.update(measure_kill(kill, times, counts, seen["ready"], seen["ended"]))
            next_kill = min(t for t in kill_times if t > kill["monotonic"])
            kill["log"] = log_about(kill, next_kill, run.log_lines)
        first_kill = kill_times[0] if math.isfinite(kill_times[0]) else seen["ended"]

        report = read_report(report_path)
        outcome = report.get("outcome") if isinstance(report, dict) else None
        comparison = compare(chaos_output, reference_output, whole_stream_expected=(outcome == "completed"))
        rss = {}
        for role, series in seen["rss"].items():
            rss[role] = {"kind": kind_of(role), "pids": len({pid for _, pid, _ in series}),
                         "first": series[0][2], "last": series[-1][2], "max": max(s for _, _, s in series),
                         "samples": [[round(t, 2), pid, size] for t, pid, size in series]}
        made = [k for k in seen["kills"] if not k.get("skipped")]
        status = run.process.returncode

        verdict = []
        if status != 0:
            verdict.append(f"the run exited with status {status}")
        for key in ("lost", "duplicated", "out_of_order", "differing", "unparseable", "unknown_window_seq"):
            if comparison[key]:
                verdict.append(f"{comparison[key]} {key.replace('_', ' ')}")
        if not made:
            verdict.append("no kill was made")
        verdict.extend(f"left behind: {text}" for text in left_behind)
        passed = not verdict
        if passed:
            verdict = [f"{len(made)} kills, exit status 0, {comparison['compared_windows']} windows: "
                       "none lost, duplicated, out of order or differing"]

        for kill in seen["kills"]:
            kill.pop("monotonic", None)
        figures = {
            "load_average": {"start": load_at_start, "end": load_average()},
            "config": {"duration_s": args.duration, "every_s": args.every, "roles": args.kinds, "seed": args.seed,
                       "replicas": args.replicas, "speed": args.speed, "repeat": repeat,
                       "steady_windows_per_s": round(steady_rate, 1), "sluice": sluice},
            "reference_seconds": round(reference_seconds, 2),
            "kills": seen["kills"],
            # (seconds since "all roles ready", lines in the predictions file), every ~20 ms
            "output_samples": [[round(t - seen["ready"], 3), c] for t, c in seen["samples"]],
            "baseline_pause_ms": baseline_pause(times, counts, seen["ready"], first_kill),
            "comparison": comparison,
            "rss": rss,
            "run": {"exit_status": status, "interrupted": seen["interrupted"], "forced": seen["forced"],
                    "seconds_after_ready": round(seen["ended"] - seen["ready"], 2),
                    "predictions_file_shrank": counter.shrinks,
                    "watcher_cpu_percent": seen["own_cpu_percent"],
                    "summary": summary_lines(run.log_lines), "errors": error_lines(run.log_lines),
                    "report_outcome": outcome,
                    "report_recovery": report.get("recovery") if isinstance(report, dict) else None},
            "left_behind": left_behind,
            "passed": passed,
            "verdict": verdict,
        }
        print_report(figures)
        if args.json:
            try:
                with open(args.json, "w") as f:
                    json.dump(figures, f)
            except OSError as error:
                raise ToolError(f"cannot write {args.json}: {error}")
        return 0 if passed else 1
    finally:
        if run is not None:
            kill_leftovers(run.pid)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except ToolError as error:
        print(f"chaos: error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("chaos: interrupted; the run's processes were killed", file=sys.stderr)
        sys.exit(130)
