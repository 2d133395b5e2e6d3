"""Photo -> metric depth, a preview and a point cloud.

    python -m eval.infer PHOTO --model MODEL --out DIR [--f-px F] [--device auto|cpu|cuda[:N]] [--autocast bf16]

MODEL is whatever `eval.models.load_depth_model` accepts (models:/name@alias, models:/name/3, runs:/..., a checkpoint
path). It runs on --device (default auto: CUDA when available, else CPU), in --autocast precision (default off).
The camera: focal `--f-px`, else from EXIF, else a default field of view with a loud warning (eval.exif);
square pixels and the principal point at the image centre, ((W - 1) / 2, (H - 1) / 2).

Files written to DIR:

- depth.npy    float32 HxW metres, as the model returned it
- depth.png    uint16 HxW millimetres, round(depth_m * 1000); 0 = invalid: no depth (non-finite or <= 0) or
               beyond 65.535 m, the largest uint16 millimetre (overflow is set to 0, not saturated, so no pixel
               claims a wrong depth; depth.npy keeps the value)
- preview.png  uint8 RGB: inverse depth through the turbo colormap (near = red, far = blue), invalid black
- cloud.ply    the valid pixels' 3D points, depth_m backprojected (model.backproject) with the intrinsics the
               model was given, coloured by the photo (eval.ply)
- meta.json    focal and its source, intrinsics, image size, depth statistics, timings

`run_infer` is the core and takes any object with the `infer(rgb, k_px=(fx, fy, cx, cy)) -> {"depth_m", ...}`
shape, so baselines, our model and test fakes go through the same code. Points are backprojected here rather
than taken from a model's optional points_m, so they always use the intrinsics above, whatever the model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import colormaps
from PIL import Image

from eval.exif import choose_focal_px, load_photo
from eval.ply import write_ply
from model.device import add_device_arguments, autocast, resolve_device

if TYPE_CHECKING:
    from eval.models import DepthModel

UINT16_MAX_MM = np.iinfo(np.uint16).max  # 65535 mm = 65.535 m, the deepest depth.png can hold
PREVIEW_COLORMAP = "turbo"


def centred_k_px(hw: tuple[int, int], f_px: float) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy): square pixels, principal point at the centre of an H x W image (pixel centres at ints)."""
    h, w = hw
    return float(f_px), float(f_px), (w - 1) / 2.0, (h - 1) / 2.0


def predict(
    model: DepthModel, rgb: np.ndarray, k_px: tuple[float, float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """(depth_m HxW float32, points_m HxWx3 float32 camera frame: x right, y down, z forward), both metres."""
    from model import backproject  # lazily: the model package imports torch, which the caller has loaded anyway

    depth_m = np.asarray(model.infer(rgb, k_px=k_px)["depth_m"], dtype=np.float32)
    if depth_m.shape != rgb.shape[:2]:
        raise ValueError(
            f"{type(model).__name__}.infer returned depth_m {depth_m.shape} for a {rgb.shape[:2]} photo: "
            "the model must map its prediction back to the photo's size"
        )
    return depth_m, backproject(depth_m, k_px)


def valid_depth(depth_m: np.ndarray) -> np.ndarray:
    return np.isfinite(depth_m) & (depth_m > 0)


def depth_png_mm(depth_m: np.ndarray) -> np.ndarray:
    """uint16 millimetres; 0 where the depth is invalid or does not fit (> 65.535 m)."""
    valid = valid_depth(depth_m)
    mm = np.rint(np.where(valid, depth_m.astype(np.float64), 0.0) * 1000.0)
    return np.where(valid & (mm <= UINT16_MAX_MM), mm, 0).astype(np.uint16)


def preview_rgb(depth_m: np.ndarray) -> np.ndarray:
    """uint8 HxWx3: inverse depth (spreads near detail, squeezes the far range) stretched over the valid pixels."""
    valid = valid_depth(depth_m)
    rgb = np.zeros((*depth_m.shape, 3), dtype=np.uint8)
    if not valid.any():
        return rgb
    inv = 1.0 / depth_m[valid].astype(np.float64)
    span = inv.max() - inv.min()
    norm = (inv - inv.min()) / span if span > 0 else np.zeros_like(inv)
    rgb[valid] = colormaps[PREVIEW_COLORMAP](norm, bytes=True)[:, :3]
    return rgb


def run_infer(
    rgb: np.ndarray,
    f_px: float,
    focal_source: str,
    model: DepthModel,
    out_dir: str | Path,
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Infer depth for `rgb` (uint8 HxWx3) seen with focal `f_px`, write the five files to out_dir, return the meta."""
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h, w = rgb.shape[:2]
    k_px = centred_k_px((h, w), f_px)
    t0 = time.perf_counter()
    depth_m, points_m = predict(model, rgb, k_px)
    infer_s = time.perf_counter() - t0

    valid = valid_depth(depth_m)
    np.save(out / "depth.npy", depth_m)
    mm = depth_png_mm(depth_m)
    Image.fromarray(mm).save(out / "depth.png")
    Image.fromarray(preview_rgb(depth_m)).save(out / "preview.png")
    cloud = valid & np.all(np.isfinite(points_m), axis=-1)
    write_ply(out / "cloud.ply", points_m[cloud], rgb[cloud])

    depths = depth_m[valid]
    meta = {
        **(extra_meta or {}),
        "width": w,
        "height": h,
        "f_px": float(f_px),
        "focal_source": focal_source,
        "k_px": list(k_px),
        "depth_m": {
            "min": float(depths.min()) if depths.size else None,
            "median": float(np.median(depths)) if depths.size else None,
            "max": float(depths.max()) if depths.size else None,
            "valid_fraction": float(valid.mean()),
        },
        # valid depths stored as 0 in depth.png: beyond 65.535 m (or under 0.5 mm)
        "depth_png": {"unit": "mm", "invalid": 0, "clipped_pixels": int(np.count_nonzero(valid & (mm == 0)))},
        "cloud_points": int(np.count_nonzero(cloud)),
        "elapsed_s": {"infer": infer_s, "total": time.perf_counter() - start},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def load_model(uri: str, device: str = "auto") -> DepthModel:
    """The infer-shaped model behind `uri` on `device` (eval.models wraps it with its lineage as `.model`)."""
    from eval.models import load_depth_model  # lazily: it pulls in torch and the checkpoint machinery

    loaded = load_depth_model(uri, device)
    return loaded.model


def model_or_error(args: argparse.Namespace) -> DepthModel:
    """load_model for a CLI: a model that cannot be loaded (no file, no MLflow store, an MLflow error, no GPU) is
    one line on stderr and exit status 2, not a traceback."""
    try:
        return load_model(args.model, args.device)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def photo_and_focal(photo: str, f_px: float | None) -> tuple[np.ndarray, float, str]:
    """(upright rgb, focal px, its source) for a photo: the given focal, else EXIF, else the warned default."""
    rgb, info = load_photo(photo)
    focal, source = choose_focal_px(rgb.shape[:2], f_px, info.f_px, info.focal_source)
    return rgb, focal, source


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def photo_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The arguments every photo command shares: the photo, the model, the focal override, the device."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("photo", help="a JPEG or PNG photo")
    parser.add_argument("--model", required=True, help="models:/name@alias, runs:/..., or a checkpoint path")
    parser.add_argument("--f-px", type=positive_float, default=None, help="focal length in pixels (beats EXIF)")
    add_device_arguments(parser)
    return parser


def photo_or_usage_error(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[np.ndarray, float, str]:
    """photo_and_focal for a CLI: an unreadable photo is a usage error with the message, not a traceback."""
    try:
        return photo_and_focal(args.photo, args.f_px)
    except ValueError as e:
        parser.error(str(e))


def main(argv: list[str] | None = None) -> int:
    parser = photo_parser("python -m eval.infer", __doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder (created)")
    args = parser.parse_args(argv)
    rgb, f_px, source = photo_or_usage_error(parser, args)
    t0 = time.perf_counter()
    model = model_or_error(args)
    device = resolve_device(args.device)
    extra = {
        "photo": args.photo,
        "model": args.model,
        "device": str(device),
        "autocast": args.autocast,
        "load_model_s": time.perf_counter() - t0,
    }
    with autocast(device, args.autocast):
        meta = run_infer(rgb, f_px, source, model, args.out, extra)
    stats = "/".join("-" if v is None else f"{v:.2f}" for v in (meta["depth_m"][k] for k in ("min", "median", "max")))
    print(
        f"{args.out}: {meta['width']}x{meta['height']}, f {f_px:.1f} px ({source}), "
        f"depth min/median/max {stats} m, {meta['cloud_points']} points"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
