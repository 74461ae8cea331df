#!/usr/bin/env bash
# Sluice's single-process executor against onnxruntime (Python, intra_op_num_threads=1) on the
# models built here: an MLP, a 1-D CNN over 6-channel windows, a 4-layer transformer encoder over
# 64-step windows, a GRU, a BERT-style encoder at sequence 128 (when torch and transformers are
# installed: tools/requirements-exporters.txt), a 100-tree depth-8 random forest, a 100-round
# gradient-boosted ensemble and a logistic regression (scikit-learn through skl2onnx). Prints windows/s for both, their ratio, latencies, and the GFLOP/s
# of the Gemm-bound models against a cblas_sgemm peak measured in the same run.
#
#   tools/bench/runtime.sh [--batch 1,8,32] [--seconds 2] [--threads 1] [--repeat 3] [--markdown]
#
# Needs: a release build (done here), cc and libopenblas-dev (for the sgemm peak), and the Python
# packages in tools/requirements.txt (numpy, onnx, onnxruntime).
set -euo pipefail
cd "$(dirname "$0")/../.."
work=".build/bench"
mkdir -p "$work"
swift build -c release --product sluice >&2
python3 tools/bench/make_models.py "$work/models" >&2
python3 tools/bench/make_ml_models.py "$work/models" >&2
python3 tools/bench/make_encoder_model.py "$work/models" >&2 || echo "encoder: torch or transformers missing, skipped" >&2
cc -O2 -o "$work/sgemm_peak" tools/bench/sgemm_peak.c -lopenblas
threads=1
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    if [[ "${args[$i]}" == "--threads" ]]; then threads="${args[$((i + 1))]}"; fi
done
peak="$(OPENBLAS_NUM_THREADS=$threads "$work/sgemm_peak" 1)"
python3 tools/bench/compare.py --sluice .build/release/sluice --models "$work/models" --peak-json "$peak" "$@"
