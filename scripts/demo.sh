#!/usr/bin/env bash
# Main job: train the small DenseMTL (SDNE) on synthetic scenes for a short budget, evaluate it on
# the test split, print the metrics and write a picture of its predictions to outputs/demo/.
# STEPS (default 150) sets the training budget.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/bootstrap.sh"
cd "$repo"
out="outputs/demo"
.venv/bin/densemtl-train --config config/train/synthetic_densemtl_sdne.yaml \
  "train.steps=${STEPS:-150}" train.batch_size=4 train.val_every=50 data.train_length=600 \
  data.val_length=16 optim.warmup_steps=20 "train.output_dir=$out/train"
.venv/bin/densemtl-eval --checkpoint "$out/train/last.safetensors" --split test --length 48 \
  --out "$out/eval"
