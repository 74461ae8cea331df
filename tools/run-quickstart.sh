#!/usr/bin/env bash
# Sets up a fresh machine, builds Sluice (release) and runs the quickstart pipeline:
# the BasicMotions IMU recording streamed through a 1D CNN split over three stage processes.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
swift build -c release --product sluice --quiet >&2
exec .build/release/sluice run pipelines/quickstart.yaml "$@"
