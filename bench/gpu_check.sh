#!/usr/bin/env bash
# The one GPU check: CUDA-only tests, NCCL, fp16+scaler and bf16 training steps of the full-size architecture,
# stage-2 memory at 7B / 13B shapes, a chat turn. One CUDA GPU, nothing downloaded, under 10 minutes.
# Usage: bench/gpu_check.sh [--json gpu_check.json] [--budget-s 540] [--only row,row]   (from anywhere)
# Writes the JSON and prints a Markdown table for BENCHMARKS.md. A CPU dry run: bench/gpu_check.sh --device cpu --toy
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python}"
if [ -z "${PYTHONPATH:-}" ]; then export PYTHONPATH="$PWD"; else export PYTHONPATH="$PWD:$PYTHONPATH"; fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$PYTHON" -m bench.run --gpu-check "$@"
