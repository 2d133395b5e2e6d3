#!/usr/bin/env bash
# The whole path on the embedded defaults: generated data in real layouts -> store -> train -> evaluate
# -> a photo to metric depth and a point cloud. Local Ray, MLflow in OUT/mlflow.db, everything under OUT.
# Usage: bash bin/demo.sh [OUT_DIR]    (`make demo` runs it inside the project's virtual environment)
set -euo pipefail
out=${1:-demo}
mkdir -p "$out"
cd "$out"
export HF_HUB_OFFLINE=1
echo "== 1. generate multi-camera synthetic scenes in KITTI's and NYU's native layouts"
[ -f src/synthetic.json ] || python -m ingest.synthetic --out src
echo "== 2. ingest them into a store (local Ray)"
python -m ingest.run --dataset synthetic --src src --store store
echo "== 3. what the store holds"
python -m store.summary store
echo "== 4. train the tiny model (Ray Train, 2 CPU workers) and register it in MLflow (./mlflow.db)"
python -m train.run --config tiny --store store --set storage_path=runs | tee train.log
echo "== 5. evaluate on cameras never seen in training (synthetic_kitti val) and on NYU-like rooms"
python -m eval.run --model models:/metric-depth@candidate --store store \
    --benchmarks synthetic_kitti:val,synthetic_nyu --baselines constant,oracle --out report
echo "== 6. a photo of an unseen camera (f = 200 px) -> metric depth, preview and point cloud"
photo=$(ls src/kitti/2030_01_04/*/image_02/data/*.png | head -n 1)
python -m eval.infer "$photo" --model models:/metric-depth@candidate --out infer --f-px 200
echo "done: $out/report/report.html, $out/infer/cloud.ply, MLflow UI: mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db"
