"""The metric distance between two pixels of a photo, through the depth model.

    python -m eval.measure PHOTO --model MODEL --from X,Y --to X,Y [--f-px F] [--device auto|cpu|cuda[:N]]

X is the column and Y the row, in pixels of the photo as viewed (after its EXIF orientation), 0-based. Both
pixels are backprojected with the model's depth and the same intrinsics as eval.infer (focal from --f-px,
EXIF or the warned default; principal point at the centre); the straight-line 3D distance is printed in metres.
The model runs on --device (default auto: CUDA when available) in --autocast precision (default off), as eval.infer.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from eval.infer import centred_k_px, model_or_error, photo_or_usage_error, photo_parser, predict
from model.device import autocast, resolve_device


def distance_m(points_m: np.ndarray, xy1: tuple[int, int], xy2: tuple[int, int]) -> float:
    """Euclidean distance, metres, between the 3D points (HxWx3 camera frame) at pixels (x1, y1) and (x2, y2)."""
    h, w = points_m.shape[:2]
    ends = []
    for x, y in (xy1, xy2):
        if not (0 <= x < w and 0 <= y < h):
            raise ValueError(f"pixel ({x}, {y}) is outside the {w}x{h} image (x is the column, y the row)")
        p = points_m[y, x].astype(np.float64)
        if not (np.all(np.isfinite(p)) and p[2] > 0):
            raise ValueError(f"no valid depth at pixel ({x}, {y}): pick another pixel")
        ends.append(p)
    return float(np.linalg.norm(ends[0] - ends[1]))


def pixel(text: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y as two integers, e.g. 120,340; got {text!r}") from None
    return x, y


def main(argv: list[str] | None = None) -> int:
    parser = photo_parser("python -m eval.measure", __doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="xy1", type=pixel, required=True, help="first pixel X,Y (column,row)")
    parser.add_argument("--to", dest="xy2", type=pixel, required=True, help="second pixel X,Y (column,row)")
    args = parser.parse_args(argv)
    rgb, f_px, source = photo_or_usage_error(parser, args)
    model = model_or_error(args)
    with autocast(resolve_device(args.device), args.autocast):
        _, points_m = predict(model, rgb, centred_k_px(rgb.shape[:2], f_px))
    try:
        d = distance_m(points_m, args.xy1, args.xy2)
    except ValueError as e:  # a pixel outside the photo or without depth: say which, no traceback
        parser.error(str(e))
    print(f"{d:.3f} m  ({args.xy1} -> {args.xy2}, f {f_px:.1f} px from {source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
