"""GraspNet-1Billion scenes (graspnet.net download): tabletop RGB-D from two cameras per scene.

--src holds `scenes/` as the archives unpack:
  scenes/scene_<4d>/<camera>/rgb/<4d>.png     1280x720 colour, camera = kinect (Azure Kinect) | realsense (D435)
  scenes/scene_<4d>/<camera>/depth/<4d>.png   uint16, depth_m = value / factor_depth, 0 invalid, registered
  scenes/scene_<4d>/<camera>/meta/<4d>.mat    MATLAB v5: intrinsic_matrix (3x3, pixels), factor_depth (1000)
Splits by scene number (GraspNet API): train 0-99, test 100-189 (seen 100-129, similar 130-159, novel 160-189).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from ingest.base import AdapterInfo, Item, make_sample, read_depth_png, read_rgb
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

SENSORS = {"kinect": "tof", "realsense": "stereo"}  # Azure Kinect DK time of flight; RealSense D435 active stereo
_TRAIN_SCENES = range(0, 100)
_TEST_SCENES = range(100, 190)


def split_of(scene: str) -> str | None:
    """train / test from `scene_<4d>`; None for a scene outside the published 190."""
    number = scene.removeprefix("scene_")
    if not number.isdigit():
        return None
    n = int(number)
    return "train" if n in _TRAIN_SCENES else "test" if n in _TEST_SCENES else None


def read_meta(src: Source, rel: str) -> tuple[tuple[float, float, float, float], float]:
    """((fx, fy, cx, cy), factor_depth) from a GraspNet meta .mat."""
    raw = src.read_bytes(rel)
    try:
        meta = scipy.io.loadmat(io.BytesIO(raw), variable_names=["intrinsic_matrix", "factor_depth"])
    except (MatReadError, ValueError, TypeError, OSError, EOFError, IndexError) as exc:
        raise SourceError(rel, f"not a readable MATLAB v5 .mat file ({exc})") from None
    missing = [key for key in ("intrinsic_matrix", "factor_depth") if key not in meta]
    if missing:
        raise SourceError(rel, f"no {', '.join(missing)} in the .mat file")
    k = np.asarray(meta["intrinsic_matrix"], np.float64)
    factor = np.asarray(meta["factor_depth"], np.float64).ravel()
    if k.shape != (3, 3) or k[0, 1] != 0:
        raise SourceError(rel, f"intrinsic_matrix must be a 3x3 pinhole K without skew, got {k.tolist()}")
    if factor.size != 1 or not factor[0] > 0:
        raise SourceError(rel, f"factor_depth must be one positive number, got {factor.tolist()}")
    return (k[0, 0], k[1, 1], k[0, 2], k[1, 2]), float(factor[0])


@register
class Graspnet:
    info = AdapterInfo(
        name="graspnet",
        description="GraspNet-1Billion scenes, kinect + realsense, uint16 depth / meta.mat factor_depth",
        sensor="tof",
        depth_encoding="uint16 PNG / factor_depth (meta .mat, 1000 = mm), 0 invalid",
        intrinsics="meta/<frame>.mat intrinsic_matrix (3x3)",
        splits="train (scenes 0-99), test (scenes 100-189)",
        eval_protocol="default",
        license="CC BY-NC-SA 4.0 (GraspNet-1Billion, not checked); non-commercial research only",
        verified=(
            "graspnet-baseline example frame (kinect, real): decode and intrinsics match the sample's README; "
            "scenes/ layout and the scene-number splits from the GraspNet API, not checked on a download"
        ),
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        if split is not None and split not in ("train", "test"):
            raise ValueError(f"graspnet has splits train, test; got {split!r}")
        for rel in src.glob("scenes/scene_*/*/rgb/*.png"):
            _, scene, camera, _, name = rel.split("/")
            scene_split = split_of(scene)
            if scene_split is None or (split is not None and scene_split != split):
                continue
            frame = name.removesuffix(".png")
            folder = f"scenes/{scene}/{camera}"
            yield Item(
                dataset=dataset,
                split=scene_split,
                scene=scene,
                frame=frame,
                camera=camera,
                files={"rgb": rel, "depth": f"{folder}/depth/{name}", "meta": f"{folder}/meta/{frame}.mat"},
            )

    def load(self, src: Source, item: Item) -> Sample:
        if item.camera not in SENSORS:
            raise SourceError(item.files["rgb"], f"unknown camera {item.camera!r}; GraspNet has kinect, realsense")
        k_px, factor = read_meta(src, item.files["meta"])
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        depth = read_depth_png(src, item.files["depth"], factor)
        if depth.shape != rgb.shape[:2]:
            raise SourceError(item.files["depth"], f"depth {depth.shape} and rgb {rgb.shape[:2]} sizes differ")
        sensor = SENSORS[item.camera]
        return make_sample(self.info, item, src, rgb, depth, k_px, data, fmt, factor, sensor=sensor)
