#!/usr/bin/env bash
# Main job: run the shipped small DenseMTL (SDNE) on the synthetic test scenes, print every metric
# and write outputs/demo/metrics.json and outputs/demo/predictions.png (input, then prediction and
# ground truth for each task).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/bootstrap.sh"
cd "$repo"
.venv/bin/densemtl-eval --checkpoint densemtl_core/assets/densemtl_sdne_small.safetensors \
  --split test --out outputs/demo --mosaic-samples 6
