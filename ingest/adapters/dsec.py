"""DSEC (uzh-rpg/DSEC) train split as the per-sequence zips unpack:
  train_images/<seq>/images/left/rectified/<index:06d>.png        rectified left RGB 1440x1080
  train_disparity/<seq>/disparity/image/<index:06d>.png           uint16, disparity px = raw / 256, 0 invalid
  train_calibration/<seq>/calibration/cam_to_cam.yaml             intrinsics.camRect1.camera_matrix [fx fy cx cy],
                                                                  disparity_to_depth.cams_12 (4x4 Q)
Disparity files are named after the image index they belong to (GT at 10 Hz, images at 20 Hz). Depth is
what OpenCV's reprojectImageTo3D gives with Q: [X Y Z W] = Q [u v d 1], z = Z / W = Q[2][3] / (Q[3][2] d + Q[3][3]).
The test split ships no disparity.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import yaml

from ingest.base import AdapterInfo, Item, lookup, make_sample, read_depth_png, read_rgb
from ingest.geometry import disparity_to_depth
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

DISPARITY_SCALE = 256.0  # raw units per pixel of disparity


def entry(doc: Any, path: str, file: str, shape: tuple[int, ...]) -> np.ndarray:
    """The numeric array at a dotted path of the YAML document, checked against `shape`."""
    value = lookup(doc, path, file)
    try:
        arr = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise SourceError(file, f"{path} is not numeric") from None
    if arr.shape != shape:
        raise SourceError(file, f"{path} has shape {arr.shape}, expected {shape}")
    return arr


def depth_from_q(disparity: np.ndarray, q: np.ndarray, file: str) -> np.ndarray:
    """z = Q23 / (Q32 d + Q33) for d > 0, written as baseline * f / d' with baseline 1/Q32, f Q23, d' = d + Q33/Q32."""
    f, inv_b, offset = q[2, 3], q[3, 2], q[3, 3]
    if not (f > 0 and inv_b > 0):
        raise SourceError(file, f"Q gives no positive depth (Q[2][3] = {f}, Q[3][2] = {inv_b})")
    shifted = np.where(disparity > 0, disparity + offset / inv_b, 0.0)
    return disparity_to_depth(shifted, 1.0 / inv_b, f)


@register
class Dsec:
    info = AdapterInfo(
        name="dsec",
        description="DSEC rectified left RGB + accumulated-LiDAR disparity, depth via the cams_12 Q matrix",
        sensor="lidar",
        depth_encoding="uint16 disparity PNG / 256 px, 0 invalid; depth = Q-reprojection (f * B / d)",
        intrinsics="calibration/cam_to_cam.yaml intrinsics.camRect1.camera_matrix",
        splits="train (the only split with disparity)",
        eval_protocol="none (training set)",
        license="CC BY-SA 4.0 (uncertain); devkit MIT",
        verified="fixture only; layout and keys from uzh-rpg/DSEC README and loaders; index pairing not checked",
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        if split not in (None, "train"):
            raise ValueError(f"dsec has split train (the test split ships no disparity); got {split!r}")
        for rel in src.glob("train_disparity/*/disparity/image/*.png"):
            seq, name = rel.split("/")[1], rel.rsplit("/", 1)[1]
            yield Item(
                dataset=dataset,
                split="train",
                scene=seq,
                frame=name.removesuffix(".png"),
                camera="left",
                files={
                    "rgb": f"train_images/{seq}/images/left/rectified/{name}",
                    "disparity": rel,
                    "calib": f"train_calibration/{seq}/calibration/cam_to_cam.yaml",
                },
            )

    def load(self, src: Source, item: Item) -> Sample:
        calib = item.files["calib"]
        try:
            doc = yaml.safe_load(src.read_text(calib))
        except yaml.YAMLError as exc:
            raise SourceError(calib, f"not valid YAML ({exc})") from None
        k_px = tuple(entry(doc, "intrinsics.camRect1.camera_matrix", calib, (4,)))
        q = entry(doc, "disparity_to_depth.cams_12", calib, (4, 4))
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        disparity = read_depth_png(src, item.files["disparity"], DISPARITY_SCALE)
        if disparity.shape != rgb.shape[:2]:
            raise SourceError(item.files["disparity"], f"size {disparity.shape} differs from rgb {rgb.shape[:2]}")
        depth = depth_from_q(disparity, q, calib)
        return make_sample(self.info, item, src, rgb, depth, k_px, data, fmt)
