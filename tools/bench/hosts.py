#!/usr/bin/env python3
"""What crossing hosts costs: the same pipeline with every role on a host of its own (network
namespaces joined by veth links to a bridge, tools/netns.sh) against one machine's loopback,
measured side by side in one run. Needs root.

With --slow-link RATE, it measures instead what narrowing a slow link gives: stage 0's host
sends at RATE (tc tbf), and the same hosts run the pipeline with that link carrying float32,
fp16 and int8, side by side; it prints each throughput and the ratios to float32.

The pipeline is tools/bench/curve.py's: two stage processes, 64 KiB batches, a model of two
elementwise layers, so that the links set the pace. CURVE is on in both. It prints each
throughput and the ratio (hosts ÷ loopback); the goal is ≥ 0.9.

  sudo python3 tools/bench/hosts.py [--windows N] [--repeat N] [--binary PATH]
  sudo python3 tools/bench/hosts.py --slow-link 100mbit [--windows N] [--repeat N]
"""
import argparse
import json
import os
import subprocess
import tempfile

import yaml

from common import ROOT, release_binary, run
from curve import pipeline

NETNS = os.path.join(ROOT, "tools", "netns.sh")


def on_hosts(binary, config, folder, name):
    """The run's windows/s with the controller on host 1, the source on host 2, the stages on
    hosts 3 and 4 and the sink on host 5, each started by hand as an operator would."""
    path = os.path.join(folder, f"{name}.yaml")
    report = os.path.join(folder, f"{name}.json")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    keys = os.path.join(folder, f"{name}-keys")
    subprocess.run([binary, "keys", keys, "--pipeline", path], check=True, stdout=subprocess.DEVNULL)
    control = "tcp://10.231.0.1:%d" % config["transport"]["base_port"]

    def host(index, arguments):
        return subprocess.Popen(["ip", "netns", "exec", f"sluice-h{index}", binary] + arguments,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def role(name, bind=None):
        arguments = [name.split("-")[0] if name.startswith("stage") else name, "--controller", control, "--name", name,
                     "--key", f"{keys}/{name}.key", "--controller-key", f"{keys}/controller.pub"]
        return arguments + (["--bind", bind] if bind else [])

    controller = host(1, ["controller", path, "--control", control, "--keys", keys, "--report", report])
    roles = [host(3, role("stage-0", "tcp://10.231.0.3:0")), host(4, role("stage-1", "tcp://10.231.0.4:0")),
             host(5, role("sink", "tcp://10.231.0.5:0")), host(2, role("source"))]
    _, errors = controller.communicate(timeout=600)
    for process in roles:
        process.wait(timeout=60)
    if controller.returncode != 0:
        raise SystemExit(f"{name}: the run failed:\n{errors[-3000:]}")
    with open(report) as f:
        return json.load(f)["windowsPerSecond"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--binary")
    parser.add_argument("--slow-link", metavar="RATE", help="shape stage 0's host to RATE (e.g. 100mbit) and compare narrowings")
    args = parser.parse_args()
    binary = release_binary(args.binary)
    subprocess.run([NETNS, "up", "5"], check=True)
    try:
        with tempfile.TemporaryDirectory() as folder:
            os.chmod(folder, 0o755)
            config = pipeline(folder, args.windows)
            if args.slow_link:
                slow_link(binary, config, folder, args)
                return
            loopback = max(run(binary, config, folder, f"loopback-{i}")["windowsPerSecond"] for i in range(args.repeat))
            hosts = max(on_hosts(binary, config, folder, f"hosts-{i}") for i in range(args.repeat))
            print(f"64 KiB batches/s   loopback {loopback:9.0f}   5 hosts {hosts:9.0f}   hosts/loopback {hosts / loopback:.2f}"
                  f"   (2 stage processes, CURVE on both)")
    finally:
        subprocess.run([NETNS, "down"], check=True)


def slow_link(binary, config, folder, args):
    """Stage 0 on host 3 sends to stage 1 on host 4 over a link shaped to args.slow_link."""
    subprocess.run([NETNS, "rate", "3", args.slow_link, "out"], check=True)
    rates = {}
    for compression in ["none", "fp16", "int8"]:
        config["stages"]["compress"] = {0: compression}
        rates[compression] = max(on_hosts(binary, config, folder, f"{compression}-{i}") for i in range(args.repeat))
    print(f"64 KiB batches/s over {args.slow_link}   float32 {rates['none']:7.1f}   fp16 {rates['fp16']:7.1f}"
          f" ({rates['fp16'] / rates['none']:.2f}x)   int8 {rates['int8']:7.1f} ({rates['int8'] / rates['none']:.2f}x)"
          f"   (stage 0's output link narrowed; 2 stage processes, CURVE on)")


if __name__ == "__main__":
    main()
