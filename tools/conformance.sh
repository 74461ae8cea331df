#!/usr/bin/env bash
# Reruns every case of ONNX's backend test data (libonnx-testdata: node, pytorch-converted,
# pytorch-operator, simple) through Sluice's executor and prints pass/fail/skip counts per folder.
#
#   tools/conformance.sh               counts per folder, and every case whose outcome differs
#                                      from Tests/Fixtures/conformance-cases.json
#   tools/conformance.sh --failures    also every failing case with its error
#   tools/conformance.sh --promote     rewrites Tests/Fixtures/conformance-cases.json: every passing case must
#                                      pass from now on; every failing one is skipped, with a reason
#
# The cases run in a debug build of the test target (ConformanceSweep in ConformanceTests.swift);
# a case that crashes the process is recorded as a crash and the sweep resumes after it.
set -euo pipefail
cd "$(dirname "$0")/.."
report="${SLUICE_CONFORMANCE_REPORT:-$(mktemp /tmp/sluice-conformance.XXXXXX)}"
: > "$report"
swift build --build-tests >&2
for attempt in $(seq 1 200); do
    if SLUICE_CONFORMANCE_REPORT="$report" swift test --skip-build --filter ConformanceSweep >/dev/null 2>&1; then
        break
    fi
    echo "conformance: a case crashed the test process ($(tail -n 1 "$report" | cut -f1)); resuming after it" >&2
done
python3 tools/conformance.py "$report" "$@"
