"""What the pipeline benchmarks share: building the release binary, loading a pipeline with its
paths made absolute, and running it to a JSON report."""
import json
import os
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def release_binary(binary=None):
    """The given binary, or a fresh release build of sluice."""
    if binary:
        return binary
    subprocess.run(["swift", "build", "-c", "release", "--product", "sluice", "--quiet"], cwd=ROOT, check=True)
    return os.path.join(ROOT, ".build", "release", "sluice")


def load_pipeline(path):
    """A pipeline file as a dict, with model and source paths absolute and output discarded."""
    with open(path) as f:
        config = yaml.safe_load(f)
    folder = os.path.dirname(os.path.abspath(path))
    config["model"]["path"] = os.path.join(folder, config["model"]["path"])
    if "path" in config["source"]:
        config["source"]["path"] = os.path.join(folder, config["source"]["path"])
    config["sink"] = {"type": "jsonl", "path": "/dev/null"}
    return config


def run(binary, config, folder, name):
    """Runs `config` with `sluice run` and returns its report."""
    path = os.path.join(folder, f"{name}.yaml")
    report = os.path.join(folder, f"{name}.json")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    done = subprocess.run([binary, "run", path, "--report", report], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"{name}: sluice run failed:\n{done.stderr}")
    with open(report) as f:
        return json.load(f)
