"""Training throughput on CPU: the tiny variant with 1 and 2 Ray Train workers, and the data wait share.

    python -m bench.train_throughput [--steps 80] [--crop 128,160] [--batch 8]

Generates a small synthetic store, runs `train.run.train` per worker count (MLflow in a temp SQLite
file), and prints samples/s and the share of step time spent waiting for data, averaged over the logged
intervals after the first (which includes start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import mlflow
import numpy as np

from ingest.engine import ingest
from ingest.synthetic import generate
from train.config import load_config
from train.run import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--crop", default="128,160")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--model", default="metric3d_tiny")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
    os.chdir(tmp)
    generate(str(tmp / "src"), scenes_per_camera=8)
    ingest("synthetic", str(tmp / "src"), str(tmp / "store"), workers=0, progress=False)
    out = {}
    for workers in (1, 2):
        sets = [
            f"steps={args.steps}",
            f"crop_hw={args.crop}",
            f"batch_size={args.batch}",
            f"num_workers={workers}",
            f"model_name={args.model}",
            "log_every=10",
            f"checkpoint_every={args.steps}",
            "preview_count=0",
            f"storage_path={tmp / 'ray'}",
        ]
        result = train(load_config("tiny", sets), str(tmp / "store"), run_name=f"throughput {workers}")
        client = mlflow.MlflowClient()
        rate = [m.value for m in client.get_metric_history(result["run_id"], "samples_per_s")][2:]
        wait = [m.value for m in client.get_metric_history(result["run_id"], "data_wait_share")][2:]
        out[workers] = {"samples_per_s": float(np.mean(rate)), "data_wait_share": float(np.mean(wait))}
        print(
            f"{workers} worker(s): {out[workers]['samples_per_s']:.1f} samples/s, "
            f"data wait share {out[workers]['data_wait_share']:.2f} ({args.model}, batch {args.batch}, "
            f"crop {args.crop})"
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
