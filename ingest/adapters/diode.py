"""DIODE (diode-dataset/diode-devkit) as the archives unpack:
  {train,val}/{indoors,outdoor}/scene_<5d>/scan_<5d>/<stem>.png    RGB 1024x768
  .../<stem>_depth.npy        float32 metres, shape (768, 1024, 1)
  .../<stem>_depth_mask.npy   (768, 1024), non-zero = valid laser return
One fixed virtual camera for every crop (devkit intrinsics.txt); fx != fy by design.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np

from ingest.base import AdapterInfo, Item, make_sample, read_rgb
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

# devkit intrinsics.txt (pixels): fx, fy, cx, cy.
K_PX = (886.81, 927.06, 512.0, 384.0)
_SPLITS = ("train", "val")


def read_npy(src: Source, rel: str) -> np.ndarray:
    """A .npy file's array (no pickles); a truncated or foreign file is a SourceError naming it."""
    try:
        return np.load(io.BytesIO(src.read_bytes(rel)), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise SourceError(rel, f"not a readable .npy array ({exc})") from None


@register
class Diode:
    info = AdapterInfo(
        name="diode",
        description="DIODE indoors/outdoor laser-scan crops, float32 .npy metres + depth mask",
        sensor="laser_scanner",
        depth_encoding="float32 .npy metres (768x1024x1); valid = depth_mask.npy != 0 and depth > 0",
        intrinsics="devkit intrinsics.txt constants fx 886.81 fy 927.06 cx 512 cy 384",
        splits="train, val (folders; val = the 771-image benchmark)",
        eval_protocol="diode: mask file, no crop; Metric3D 0.1-150 m (ZoeDepth: indoor 10 m, outdoor 80 m)",
        license="MIT (devkit repository; whether it covers the data is not stated)",
        verified="fixture only; layout, encoding and intrinsics from diode-devkit (README, diode.py, intrinsics.txt)",
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        for sub in [split] if split else list(_SPLITS):
            if sub not in _SPLITS:
                raise ValueError(f"diode has splits {', '.join(_SPLITS)}; got {sub!r}")
            for rel in src.glob(f"{sub}/*/scene_*/scan_*/*.png"):
                _, kind, scene, scan, name = rel.split("/")
                stem = rel.removesuffix(".png")
                yield Item(
                    dataset=dataset,
                    split=sub,
                    scene=f"{scene}/{scan}",
                    frame=name.removesuffix(".png"),
                    camera=kind,
                    files={"rgb": rel, "depth": f"{stem}_depth.npy", "mask": f"{stem}_depth_mask.npy"},
                )

    def load(self, src: Source, item: Item) -> Sample:
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        depth, mask = read_npy(src, item.files["depth"]), read_npy(src, item.files["mask"])
        if depth.ndim == 3 and depth.shape[2] == 1:
            depth = depth[:, :, 0]
        for key, arr in (("depth", depth), ("mask", mask)):
            if arr.shape != rgb.shape[:2]:
                raise SourceError(item.files[key], f"shape {arr.shape} differs from rgb {rgb.shape[:2]}")
        ok = (mask != 0) & np.isfinite(depth) & (depth > 0)
        depth_m = np.where(ok, depth, 0).astype(np.float32)
        return make_sample(self.info, item, src, rgb, depth_m, K_PX, data, fmt)
