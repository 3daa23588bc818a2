#!/usr/bin/env bash
# The whole MiniGPT-4 recipe on the tiny world, on a CPU, in minutes (no GPU, no downloads):
#   1. build the tiny world (images, captions, tokenizer, tiny LLaMA, pretrained tiny towers) into tiny_world/
#   2. stage 1: align on the two webdataset sources, 2 processes (torchrun, gloo)
#   3. stage 2: fine-tune on the detailed descriptions from the stage-1 checkpoint
#   4. evaluate on the held-out images (after stage 1 and after stage 2), one chat answer
# Usage: scripts/quickstart_tiny.sh [SEED]   (run from anywhere; works in the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
SEED="${1:-0}"
PY="${PYTHON:-python}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
START=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - START ))s] $*"; }

step "1/5 building the tiny world (seed $SEED)"
$PY -m minigpt4.tiny.build --out tiny_world --seed "$SEED" --force

step "2/5 stage 1: torchrun --nproc-per-node 2 train.py (gloo on CPU)"
rm -rf output/tiny_stage1 output/tiny_stage2
OMP_NUM_THREADS=1 $PY -m torch.distributed.run --nproc-per-node 2 --standalone \
  train.py --cfg-path train_configs/minigpt4_tiny_stage1_pretrain.yaml

step "3/5 stage 2: python train.py (from the stage-1 checkpoint)"
OMP_NUM_THREADS="${STAGE2_THREADS:-2}" $PY train.py --cfg-path train_configs/minigpt4_tiny_stage2_finetune.yaml

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
