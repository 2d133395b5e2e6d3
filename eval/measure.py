"""The metric distance between two pixels of a photo, through the depth model.

    python -m eval.measure PHOTO --model MODEL --from X,Y --to X,Y [--f-px F]

X is the column and Y the row, in pixels of the photo as viewed (after its EXIF orientation), 0-based. Both
pixels are backprojected with the model's depth and the same intrinsics as eval.infer (focal from --f-px,
EXIF or the warned default; principal point at the centre); the straight-line 3D distance is printed in metres.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from eval.infer import centred_k_px, load_model, photo_and_focal, positive_float, predict


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
    parser = argparse.ArgumentParser(prog="python -m eval.measure", description=__doc__.split("\n\n")[0])
    parser.add_argument("photo", help="a JPEG or PNG photo")
    parser.add_argument("--model", required=True, help="models:/name@alias, runs:/..., or a checkpoint path")
    parser.add_argument("--from", dest="xy1", type=pixel, required=True, help="first pixel X,Y (column,row)")
    parser.add_argument("--to", dest="xy2", type=pixel, required=True, help="second pixel X,Y (column,row)")
    parser.add_argument("--f-px", type=positive_float, default=None, help="focal length in pixels (beats EXIF)")
    args = parser.parse_args(argv)

    try:
        rgb, f_px, source = photo_and_focal(args.photo, args.f_px)
    except ValueError as e:  # an unreadable photo: usage and the message, not a traceback
        parser.error(str(e))
    _, points_m = predict(load_model(args.model), rgb, centred_k_px(rgb.shape[:2], f_px))
    d = distance_m(points_m, args.xy1, args.xy2)
    print(f"{d:.3f} m  ({args.xy1} -> {args.xy2}, f {f_px:.1f} px from {source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
