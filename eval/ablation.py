"""python -m eval.ablation: the CSTM ablation, measured. Metric3D's central claim on our own platform.

Generates a multi-camera synthetic store (KITTI layout; training cameras f = 150, 250, 360 px; unseen
val cameras f = 200, 450 px; 1 m cubes and a 1 m checkerboard give metric scale), trains the same
model with cstm = none, label and image for each seed, and scores all of them in metric mode (no
alignment) on the unseen cameras. Writes ablation.md / ablation.json and a full report per run.

  python -m eval.ablation --out ablation --seeds 0,1 --steps 600
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from eval.run import evaluate
from ingest.engine import ingest
from ingest.synthetic import Camera, generate
from train.config import load_config
from train.run import train

CAMERAS = (
    Camera("cam_f150", 150.0, 352, 256, "kitti", "train"),
    Camera("cam_f250", 250.0, 352, 256, "kitti", "train"),
    Camera("cam_f360", 360.0, 352, 256, "kitti", "train"),
    Camera("cam_f200", 200.0, 352, 256, "kitti", "val"),
    Camera("cam_f450", 450.0, 352, 256, "kitti", "val"),
)
MODES = ("none", "label", "image")


def run(out: Path, seeds: list[int], steps: int, scenes: int, overrides: list[str]) -> dict:
    store = out / "store"
    if not (store / "store.json").exists():
        generate(str(out / "src"), scenes_per_camera=scenes, cameras=CAMERAS)
        ingest("synthetic", str(out / "src"), str(store), progress=False)
    table: dict[str, dict[str, list[float]]] = {m: {"abs_rel": [], "delta1": []} for m in MODES}
    for seed in seeds:
        for mode in MODES:
            sets = [
                f"cstm={mode}",
                f"seed={seed}",
                f"steps={steps}",
                "datasets=synthetic_kitti",
                f"storage_path={out / 'ray'}",
                f"registered_model=ablation-{mode}",
                *overrides,
            ]
            result = train(load_config("tiny", sets), str(store), run_name=f"ablation {mode} seed {seed}")
            results = evaluate(
                [result["checkpoint"]], str(store), ["synthetic_kitti:val"], out / f"report-{mode}-seed{seed}", []
            )
            metric = next(r for r in results if r["mode"] == "metric")["metrics"]
            table[mode]["abs_rel"].append(metric["abs_rel"])
            table[mode]["delta1"].append(metric["delta1"])
    summary = {"seeds": seeds, "steps": steps, "cameras": [c.__dict__ for c in CAMERAS], "results": table}
    (out / "ablation.json").write_text(json.dumps(summary, indent=1))
    lines = [
        "| cstm | AbsRel (unseen cameras, metric) per seed | mean | delta<1.25 per seed | mean |",
        "|---|---|---|---|---|",
    ]
    for mode in MODES:
        a, d = table[mode]["abs_rel"], table[mode]["delta1"]
        lines.append(
            f"| {mode} | {', '.join(f'{v:.3f}' for v in a)} | {np.mean(a):.3f} | "
            f"{', '.join(f'{v:.3f}' for v in d)} | {np.mean(d):.3f} |"
        )
    (out / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval.ablation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="ablation", help="output folder (store, runs, reports, tables)")
    parser.add_argument("--seeds", default="0,1", help="comma list of seeds (default 0,1)")
    parser.add_argument("--steps", type=int, default=600, help="training steps per run (default 600)")
    parser.add_argument("--scenes", type=int, default=24, help="scenes per camera (default 24)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra training overrides")
    args = parser.parse_args(argv)
    run(Path(args.out), [int(s) for s in args.seeds.split(",")], args.steps, args.scenes, args.set)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
