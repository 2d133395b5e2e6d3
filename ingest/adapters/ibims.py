"""iBims-1 raw release (`ibims1_core_raw/`):
  imagelist.txt                 one image name a line
  rgb/<name>.png                640x480
  depth/<name>.png              uint16, metres = raw * 50 / 65535
  mask_invalid/<name>.png       non-zero where the depth is valid
  mask_transp/<name>.png        non-zero where the surface is not transparent
  calib/<name>.txt              3x3 K, comma separated
Ground truth = depth where both masks are non-zero (as the ZoeDepth loader combines them).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ingest.base import AdapterInfo, Item, make_sample, read_depth_png, read_rgb
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample
from store.codecs import DecodeError, decode_image

DEPTH_SCALE = 65535.0 / 50.0  # raw units per metre: the 16-bit range spans 50 m
_MASKS = ("mask_invalid", "mask_transp")


def parse_k3(text: str, file: str) -> tuple[float, float, float, float]:
    """fx, fy, cx, cy of a 3x3 K written row-major, separated by commas and/or whitespace."""
    values = text.replace(",", " ").split()
    try:
        k = [float(v) for v in values]
    except ValueError as exc:
        raise SourceError(file, f"not a numeric 3x3 matrix ({exc})") from None
    if len(k) != 9:
        raise SourceError(file, f"expected 9 values (3x3 K), got {len(k)}")
    return k[0], k[4], k[2], k[5]


def read_mask(src: Source, rel: str) -> np.ndarray:
    try:
        mask = decode_image(src.read_bytes(rel))
    except DecodeError as exc:
        raise SourceError(rel, str(exc)) from None
    if mask.ndim != 2:
        raise SourceError(rel, f"mask must be single-channel, got shape {mask.shape}")
    return mask != 0


@register
class Ibims:
    info = AdapterInfo(
        name="ibims",
        description="iBims-1 raw release, laser-scanned indoor depth with invalid/transparent masks",
        sensor="laser_scanner",
        depth_encoding="uint16 PNG, metres = raw * 50 / 65535; valid where mask_invalid and mask_transp != 0",
        intrinsics="calib/<name>.txt (3x3 K, comma separated)",
        splits="test (imagelist.txt, 100 images)",
        eval_protocol="ibims: Eigen crop, cap 10 m (ZoeDepth)",
        license="not stated by the stored sources",
        verified="fixture only; encoding from the ZoeDepth loader (single source), layout from public loaders",
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        if split not in (None, "test"):
            raise ValueError(f"ibims has split test; got {split!r}")
        for name in src.read_text("imagelist.txt").split():
            files = {"rgb": f"rgb/{name}.png", "depth": f"depth/{name}.png", "calib": f"calib/{name}.txt"}
            files |= {m: f"{m}/{name}.png" for m in _MASKS}
            yield Item(dataset=dataset, split="test", scene="", frame=name, camera="dslr", files=files)

    def load(self, src: Source, item: Item) -> Sample:
        k_px = parse_k3(src.read_text(item.files["calib"]), item.files["calib"])
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        depth = read_depth_png(src, item.files["depth"], DEPTH_SCALE)
        if depth.shape != rgb.shape[:2]:
            raise SourceError(item.files["depth"], f"depth {depth.shape} and rgb {rgb.shape[:2]} sizes differ")
        for key in _MASKS:
            mask = read_mask(src, item.files[key])
            if mask.shape != depth.shape:
                raise SourceError(item.files[key], f"mask {mask.shape} and depth {depth.shape} sizes differ")
            depth = np.where(mask, depth, np.float32(0))
        return make_sample(self.info, item, src, rgb, depth, k_px, data, fmt, DEPTH_SCALE)
