"""Time `eval.infer` on one 12-megapixel photo (4000 x 3000) on CPU, for the tiny and the large model.

    python -m bench.infer_time [--models metric3d_tiny,unet_convnext_large]

Weights are random (the time does not depend on them): the checkpoint is saved first, then the full CLI
path runs: load, infer (fit to infer_hw, network, back to 12 MP), depth PNG/NPY, preview, 12 M-point PLY.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from eval.infer import main as infer_main
from model import build_model, get_model_config, save_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="metric3d_tiny,unet_convnext_large")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-infer-"))
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(small).resize((4000, 3000), Image.BILINEAR).save(tmp / "photo.jpg", quality=90)
    out = {}
    for name in args.models.split(","):
        ckpt = tmp / f"{name}.pt"
        save_checkpoint(str(ckpt), build_model(get_model_config(name)))
        t0 = time.perf_counter()
        infer_main([str(tmp / "photo.jpg"), "--model", str(ckpt), "--out", str(tmp / name), "--f-px", "3000"])
        total = time.perf_counter() - t0
        meta = json.loads((tmp / name / "meta.json").read_text())
        out[name] = {"total_s": total, "meta_timings": {k: v for k, v in meta.items() if "second" in k or "_s" in k}}
        print(
            f"{name}: eval.infer on 4000x3000 took {total:.1f} s wall ({torch.get_num_threads()} torch threads); "
            f"{out[name]['meta_timings']}"
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
