#!/usr/bin/env bash
# The whole path on the embedded defaults: generated data in real layouts -> store -> summary.
# Usage: bash bin/demo.sh [OUT_DIR]    (make demo runs it inside the project's virtual environment)
set -euo pipefail
out=${1:-demo}
mkdir -p "$out"
echo "== 1. generate multi-camera synthetic scenes in KITTI's and NYU's native layouts"
python -m ingest.synthetic --out "$out/src"
echo "== 2. ingest them into a store (local Ray, 2 workers)"
python -m ingest.run --dataset synthetic --src "$out/src" --store "$out/store"
echo "== 3. what the store holds"
python -m store.summary "$out/store"
