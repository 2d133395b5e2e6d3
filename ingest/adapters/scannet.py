"""ScanNet v2 as SensReader (`SensReader/python/reader.py`) exports each `.sens` stream:
  <scene>/color/<i>.jpg                        colour 1296x968
  <scene>/depth/<i>.png                        uint16, depth_shift 1000 units per metre (mm), 0 invalid; 640x480
  <scene>/intrinsic/intrinsic_color.txt        4x4 text, K in the top-left 3x3
Depth comes at its own, smaller size. As Metric3D does, it is brought to the colour size with nearest
neighbour (values unchanged, each depth pixel repeated) and paired with the colour intrinsics.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ingest.base import AdapterInfo, Item, make_sample, read_depth_png, read_rgb
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

DEPTH_SHIFT = 1000.0  # SensReader's depth_shift: raw units per metre


def parse_matrix4(text: str, file: str) -> np.ndarray:
    values = text.split()
    try:
        m = np.array([float(v) for v in values]).reshape(4, 4)
    except ValueError:
        raise SourceError(file, f"expected a 4x4 matrix (16 numbers), got {len(values)} tokens") from None
    return m


def resize_nearest(depth: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest neighbour by pixel centres: output pixel i takes input pixel floor((i + 0.5) * n_in / n_out)."""
    h, w = hw
    rows = np.minimum(((np.arange(h) + 0.5) * depth.shape[0] / h).astype(np.int64), depth.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * depth.shape[1] / w).astype(np.int64), depth.shape[1] - 1)
    return depth[rows[:, None], cols[None, :]]


@register
class Scannet:
    info = AdapterInfo(
        name="scannet",
        description="ScanNet v2 SensReader export (color/, depth/ mm, intrinsic_color.txt)",
        sensor="structured_light",
        depth_encoding="uint16 PNG / depth_shift 1000 (mm), 0 invalid; nearest-resized to the colour size",
        intrinsics="<scene>/intrinsic/intrinsic_color.txt (4x4)",
        splits="test (every exported scene)",
        eval_protocol="scannet: no crop, cap 10 m",
        license="ScanNet Terms of Use + CC BY-NC-SA 4.0",
        verified="fixture only; export layout from ScanNet/ScanNet SensReader/python; depth resize as Metric3D",
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        if split not in (None, "test"):
            raise ValueError(f"scannet has split test; got {split!r}")
        for rel in src.glob("*/color/*.jpg"):
            scene, _, name = rel.split("/")
            index = name.removesuffix(".jpg")
            yield Item(
                dataset=dataset,
                split="test",
                scene=scene,
                frame=index,
                camera="color",
                files={
                    "rgb": rel,
                    "depth": f"{scene}/depth/{index}.png",
                    "intrinsic": f"{scene}/intrinsic/intrinsic_color.txt",
                },
            )

    def load(self, src: Source, item: Item) -> Sample:
        k = parse_matrix4(src.read_text(item.files["intrinsic"]), item.files["intrinsic"])
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        depth = resize_nearest(read_depth_png(src, item.files["depth"], DEPTH_SHIFT), rgb.shape[:2])
        k_px = (k[0, 0], k[1, 1], k[0, 2], k[1, 2])
        return make_sample(self.info, item, src, rgb, depth, k_px, data, fmt, DEPTH_SHIFT)
