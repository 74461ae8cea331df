#!/usr/bin/env bash
# Installs what building, running and testing Sluice needs on Debian: libzmq and OpenBLAS (with
# headers), ONNX's backend test data for the conformance tests, and from PyPI pyzmq (the tests
# run the example consumer in tools/consumers) and kubernetes-validate (they check the manifests
# `sluice deploy kubernetes` writes).
# Idempotent: packages already present are left alone, and apt is not touched at all then.
set -euo pipefail

packages=(libzmq3-dev libopenblas-dev libonnx-testdata prometheus)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "setup: Swift 6 is required (swift not found on PATH)" >&2; exit 1; }
# The tests run tools/consumers/consume.py and kubernetes-validate with the python3 on PATH.
requirement() { grep "^$1==" "$(dirname "$0")/requirements.txt"; }
if ! python3 -c "import zmq" 2>/dev/null; then
    echo "setup: installing pyzmq" >&2
    python3 -m pip install -q "$(requirement pyzmq)"
fi
if ! command -v kubernetes-validate >/dev/null; then
    echo "setup: installing kubernetes-validate" >&2
    python3 -m pip install -q "$(requirement kubernetes-validate)"
fi
