#!/usr/bin/env bash
# The whole MiniGPT-4 recipe on the tiny world, on a CPU, in minutes (no GPU, no downloads):
#   1. build the tiny world (images, captions, tokenizer, tiny LLaMA, pretrained tiny towers) into tiny_world/
#   2. stage 1: align on the two webdataset sources, 2 processes (torchrun, gloo)
#   3. stage 2: fine-tune on the detailed descriptions from the stage-1 checkpoint
#   4. evaluate on the held-out images (after stage 1 and after stage 2), one chat answer
# Usage: scripts/quickstart_tiny.sh [--threads N] [SEED]   (run from anywhere; works in the repository root)
#   --threads N   torch threads (default: the CPUs this process may use); stage 1's two processes get N/2 each.
#                 The tiny world is the same, byte for byte, for the same SEED and N.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
THREADS=""
SEED=0
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS="${2:?--threads needs a number}"; shift 2 ;;
    --threads=*) THREADS="${1#--threads=}"; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) SEED="$1"; shift ;;
  esac
done
if [ -z "$THREADS" ]; then
  THREADS=$($PY -c "import os; print(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1)")
fi
case "$THREADS" in ''|*[!0-9]*|0) echo "--threads must be a positive whole number, got '$THREADS'" >&2; exit 2 ;; esac
PER_RANK=$(( THREADS / 2 > 0 ? THREADS / 2 : 1 ))
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS="$THREADS"
START=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - START ))s] $*"; }

step "1/5 building the tiny world (seed $SEED, $THREADS threads)"
$PY -m minigpt4.tiny.build --out tiny_world --seed "$SEED" --threads "$THREADS" --force

step "2/5 stage 1: torchrun --nproc-per-node 2 train.py (gloo on CPU, $PER_RANK threads each)"
rm -rf output/tiny_stage1 output/tiny_stage2
OMP_NUM_THREADS="$PER_RANK" $PY -m torch.distributed.run --nproc-per-node 2 --standalone \
  train.py --cfg-path train_configs/minigpt4_tiny_stage1_pretrain.yaml

step "3/5 stage 2: python train.py (from the stage-1 checkpoint, $THREADS threads)"
$PY train.py --cfg-path train_configs/minigpt4_tiny_stage2_finetune.yaml

step "4/5 evaluation on the held-out images"
EVAL="$PY -m minigpt4.tiny.evaluate --cfg-path eval_configs/minigpt4_tiny_eval.yaml"
S1="model.ckpt=output/tiny_stage1/tiny_stage1/checkpoint_1.pth"
echo "--- after stage 1, asked as in stage 1 (no prompt):"
$EVAL --prompt stage1 --json output/tiny_eval/stage1_stage1.json --options "$S1" 2>/dev/null
echo "--- after stage 1, asked with the stage-2 template (style before stage 2):"
$EVAL --prompt stage2 --json output/tiny_eval/stage1_stage2.json --options "$S1" 2>/dev/null
echo "--- after stage 2, stage-2 template:"
$EVAL --prompt stage2 --json output/tiny_eval/stage2_stage2.json 2>/dev/null
echo "--- after stage 2, Vicuna v0 chat prompt (system message):"
$EVAL --prompt chat --json output/tiny_eval/stage2_chat.json 2>/dev/null

step "5/5 one chat answer about a held-out image"
if $PY -c "import minigpt4.cli.chat" 2>/dev/null; then
  $PY -m minigpt4.cli.chat --cfg-path eval_configs/minigpt4_tiny_eval.yaml --device cpu --greedy \
    --image tiny_world/heldout/image/0.jpg --question "Describe this image in detail." 2>/dev/null
else
  $PY -m minigpt4.tiny.evaluate --cfg-path eval_configs/minigpt4_tiny_eval.yaml --image tiny_world/heldout/image/0.jpg
fi
echo "(truth: $($PY -c "import json; print(json.load(open('tiny_world/heldout/labels.json'))['items'][0]['labels'])"))"
step "done"
