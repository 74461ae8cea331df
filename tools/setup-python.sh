#!/usr/bin/env bash
# Install the Python packages used by tools/*.py. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r tools/requirements.txt
