#!/usr/bin/env bash
# Main job: the shipped model in the live ROS 2 node on a recorded camera. Writes a sample
# recording, starts the node (ONNX Runtime), plays the recording to it, scores what the node
# publishes against the ground truth, and writes to outputs/demo/: report.json, frames.csv,
# mosaics of the worst and best frames, demo.gif and node_speed.json.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/bootstrap.sh"
cd "$repo"
exec .venv/bin/python -m densemtl_ros.demo --out outputs/demo "$@"
