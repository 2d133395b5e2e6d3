"""python -m model.export: a model as one ONNX graph from photo to metres, checked against PyTorch with onnxruntime.

  python -m model.export --model models:/metric-depth@champion --out model.onnx --height 480 --width 640

The graph is exported for one photo size H x W (default: the size the model fits photos into) and any batch:
  inputs   image      uint8   B x H x W x 3, RGB
           intrinsics float32 B x 4, (fx, fy, cx, cy) in pixels of that photo
  output   depth_m    float32 B x H x W, metres along the optical axis
Inside it runs what model.infer() runs in PyTorch: the photo fitted into the network input (OpenCV's uint8 bilinear
resize, reproduced bit for bit), the network (ImageNet normalisation is part of it), the prediction resized
back to H x W and, in CSTM label mode, depth_m = depth_c * f / F_CANONICAL_PX with f the mean focal of the fitted
photo, (fx sx + fy sy) / 2. CSTM image mode resizes by the focal (a size known only at run time) and is refused.
After export the graph is run with onnxruntime on a synthetic test photo and compared with model.infer(); the
largest difference is printed and the command fails if it exceeds MAX_RELATIVE_DIFF of the depth.
Needs the `onnx` extra: pip install -c constraints.txt '.[onnx]'.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import nn

# The acceptance bound: onnxruntime's depth may differ from model.infer()'s by this fraction of the depth.
MAX_RELATIVE_DIFF = 1e-3
# The default ONNX opset: torch's dynamo exporter writes 18 natively; onnxruntime runs it from 1.14 on.
OPSET = 18


def sample_photo(hw: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A deterministic RGB photo (smooth colour fields with edges and fine texture) and a plausible camera for it."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = hw
    coarse = cv2.resize(rng.uniform(0, 255, (6, 8, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    blocks = cv2.resize(rng.uniform(-40, 40, (4, 5, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
    rgb = np.clip(coarse + blocks + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
    # A ~60 degree horizontal field of view, slightly non-square pixels and an off-centre principal point.
    f_px = 0.87 * w
    return rgb, (f_px, 1.01 * f_px, 0.52 * (w - 1), 0.48 * (h - 1))


@dataclass(frozen=True)
class Check:
    """onnxruntime against model.infer() on one photo: metres and fractions of the PyTorch depth."""

    max_abs_m: float
    max_relative: float
    median_depth_m: float


def check_onnx(path: str, net: nn.Module, hw: tuple[int, int]) -> Check:
    """Run the exported graph with onnxruntime on sample_photo(hw) and compare with the network's own infer()."""
    import onnxruntime as ort

    rgb, k_px = sample_photo(hw)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": rgb[None], "intrinsics": np.asarray([k_px], np.float32)})
    want = net.infer(rgb, k_px)["depth_m"]
    diff = np.abs(got[0].astype(np.float64) - want)
    return Check(float(diff.max()), float((diff / np.maximum(want, 1e-6)).max()), float(np.median(want)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="models:/..., runs:/..., a checkpoint path or metric3d_v1:PATH")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--height", type=int, help="photo height in pixels (default: the model's fit size)")
    parser.add_argument("--width", type=int, help="photo width in pixels (default: the model's fit size)")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    args = parser.parse_args(argv)
    from eval.models import load_depth_model  # lazily, as model.onnx_graph: both pull in torch
    from model.onnx_graph import export_onnx, fit_hw

    try:
        net = load_depth_model(args.model, "cpu").model  # traced and checked on the CPU, whatever the machine
        default_h, default_w = fit_hw(net)
        hw = (args.height or default_h, args.width or default_w)
        export_onnx(net, hw, args.out, args.opset)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    check = check_onnx(args.out, net, hw)
    ok = check.max_relative <= MAX_RELATIVE_DIFF
    print(
        f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB): image uint8 Bx{hw[0]}x{hw[1]}x3 + intrinsics "
        f"float32 Bx4 -> depth_m float32 Bx{hw[0]}x{hw[1]}, opset {args.opset}\n"
        f"onnxruntime vs PyTorch infer() on a {hw[0]}x{hw[1]} test photo (median depth {check.median_depth_m:.3f} m): "
        f"max |diff| {check.max_abs_m:.2e} m, {check.max_relative:.2e} of depth "
        f"({'within' if ok else 'OVER'} the {MAX_RELATIVE_DIFF:.0e} bound)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
