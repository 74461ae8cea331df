#!/usr/bin/env bash
# Sets up a fresh machine and runs the whole test suite (unit, state machine, transport,
# multi-process pipelines on loopback, and the CLI end to end).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
swift build --product sluice
swift test "$@"
