"""Benchmark protocols as data: which pixels of a ground-truth depth map are scored, and on which split.

A protocol is one frozen row: a crop (or none), a depth range in metres and the split to evaluate. The standard
benchmarks are rows of PROTOCOLS (values and sources in docs: shared datasets.md section 6, design.md section 7);
any other dataset in the store gets a default row built from its sensor kind (DEFAULT_MAX_DEPTH_M). Nothing here
is code per dataset: `eval_mask` applies any row the same way.

Conventions, taken from the Eigen-split evaluation code (Eigen et al., Garg et al., monodepth, BTS):

- a pixel is scored when gt is finite, min_depth_m < gt < max_depth_m (both strict), it lies inside the crop,
  and the sample's own `valid` mask (when given) is set;
- fractional crops are turned into pixels by truncation, int(fraction * size), as that code does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.sample import SENSOR_KINDS


@dataclass(frozen=True)
class Crop:
    """Rows top:bottom, cols left:right (end exclusive).

    Fractions of H and W when `on_hw` is None; otherwise pixels of an image of exactly `on_hw` = (H, W), the size
    the benchmark defines them on (an image of another size is refused rather than guessed at)."""

    top: float
    bottom: float
    left: float
    right: float
    on_hw: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        limit_h, limit_w = self.on_hw if self.on_hw else (1.0, 1.0)
        if not (0 <= self.top < self.bottom <= limit_h and 0 <= self.left < self.right <= limit_w):
            raise ValueError(f"crop {self} is empty or outside {'the image' if self.on_hw else '[0, 1]'}")

    def box(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) in pixels of an H x W image."""
        if self.on_hw is None:
            return int(self.top * h), int(self.bottom * h), int(self.left * w), int(self.right * w)
        if (h, w) != tuple(self.on_hw):
            raise ValueError(
                f"this crop is defined in pixels of {self.on_hw[0]}x{self.on_hw[1]} images; got {h}x{w}. "
                "Evaluate at the benchmark's native size, or override the protocol's crop with a fractional Crop"
            )
        return int(self.top), int(self.bottom), int(self.left), int(self.right)


@dataclass(frozen=True)
class Protocol:
    """What a benchmark scores. split None: every split the store holds for the dataset."""

    name: str
    crop: Crop | None
    min_depth_m: float
    max_depth_m: float
    split: str | None
    source: str

    def __post_init__(self) -> None:
        if not 0 <= self.min_depth_m < self.max_depth_m:
            raise ValueError(f"protocol {self.name!r}: need 0 <= min_depth_m < max_depth_m, got {self.min_depth_m}")


# The Eigen crop of NYU, in pixels of the 480 x 640 frames; iBims-1 (also 640 x 480) is scored with it too.
EIGEN_CROP_NYU = Crop(45, 471, 41, 601, on_hw=(480, 640))
# The Garg crop of KITTI, as fractions of H and W (KITTI frame sizes vary a little per recording date).
GARG_CROP_KITTI = Crop(0.40810811, 0.99189189, 0.03594771, 0.96405229)

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol("nyu", EIGEN_CROP_NYU, 1e-3, 10.0, "test", "Eigen crop, 1e-3-10 m (datasets.md 4.1)"),
        Protocol("kitti", GARG_CROP_KITTI, 1e-3, 80.0, "test", "Garg crop, 1e-3-80 m, Eigen test (datasets.md 4.2)"),
        Protocol("ddad", None, 0.0, 200.0, "val", "no crop, 0-200 m as packnet-sfm; the test split has no GT"),
        Protocol("diode", None, 0.1, 150.0, "val", "no crop (mask file), 0.1-150 m as Metric3D (datasets.md 4.3)"),
        Protocol("eth3d", None, 0.0, 100.0, "test", "no crop, depth up to 100 m as Metric3D (datasets.md 4.5)"),
        Protocol("nuscenes", None, 1e-3, 80.0, "test", "no crop; 80 m, the KITTI cap for driving LiDAR (our choice)"),
        Protocol("sevenscenes", None, 1e-3, 10.0, "test", "no crop, 10 m cap (datasets.md 4.4)"),
        Protocol("ibims", EIGEN_CROP_NYU, 1e-3, 10.0, "test", "Eigen crop, 10 m cap as ZoeDepth (datasets.md 4.8)"),
        Protocol("scannet", None, 1e-3, 10.0, "test", "no crop, 10 m cap (structured light, datasets.md 4.7)"),
    )
}

# Default depth caps per sensor kind, metres: roughly where each sensor's ground truth stops being trustworthy.
DEFAULT_MAX_DEPTH_M: dict[str, float] = {
    "lidar": 80.0,  # the KITTI convention for automotive LiDAR
    "stereo": 80.0,  # stereo depth error grows with depth^2; driving rigs use the LiDAR cap
    "structured_light": 10.0,  # Kinect v1 / Structure Sensor: the NYU / ScanNet cap
    "tof": 10.0,  # indoor time-of-flight (Kinect v2, Azure Kinect)
    "laser_scanner": 150.0,  # terrestrial scanners (FARO): the DIODE cap
    "sfm": 200.0,  # multi-view reconstructions reach far; the DDAD-style long-range cap
    "rendered": 80.0,  # depth rendered from scanned meshes has no sensor limit: the outdoor cap drops far planes
    "synthetic": 80.0,  # game-engine depth: likewise, and the sky's huge values
}
DEFAULT_MIN_DEPTH_M = 1e-3


def get_protocol(name: str) -> Protocol:
    """A standard protocol by name; an unknown name raises and lists the valid ones."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise KeyError(f"unknown protocol {name!r}; valid: {', '.join(sorted(PROTOCOLS))}") from None


def default_protocol(sensor: str) -> Protocol:
    """No crop, the sensor kind's depth range, every split."""
    if sensor not in DEFAULT_MAX_DEPTH_M:
        raise KeyError(f"unknown sensor kind {sensor!r}; valid: {', '.join(SENSOR_KINDS)}")
    return Protocol(
        f"default_{sensor}",
        None,
        DEFAULT_MIN_DEPTH_M,
        DEFAULT_MAX_DEPTH_M[sensor],
        None,
        f"default for {sensor}: no crop, {DEFAULT_MIN_DEPTH_M}-{DEFAULT_MAX_DEPTH_M[sensor]} m",
    )


def protocol_for(
    dataset: str,
    sensor: str,
    overrides: dict[str, Any] | None = None,
    name: str | None = None,
) -> Protocol:
    """The protocol to score `dataset` with.

    `name` picks a standard protocol explicitly (e.g. "nyu" for a copy ingested as "nyu_mini"; unknown names
    raise); otherwise the dataset's own standard protocol, else the default for its sensor kind. `overrides`
    replaces fields, e.g. {"max_depth_m": 20.0} or {"crop": None}; an unknown field raises."""
    if name is not None:
        protocol = get_protocol(name)
    else:
        protocol = PROTOCOLS.get(dataset) or default_protocol(sensor)
    if not overrides:
        return protocol
    fields = {f.name for f in dataclasses.fields(Protocol)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise KeyError(f"unknown protocol field(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}")
    return dataclasses.replace(protocol, **overrides)


def eval_mask(gt_m: np.ndarray, protocol: Protocol, valid: np.ndarray | None = None) -> np.ndarray:
    """HxW bool: the pixels `protocol` scores in the HxW ground-truth depth `gt_m` (metres).

    `valid` is the sample's own ground-truth mask (e.g. DIODE's mask file); depth alone decides when None."""
    gt = np.asarray(gt_m)
    if gt.ndim != 2:
        raise ValueError(f"gt depth must be HxW; got shape {gt.shape}")
    mask = np.isfinite(gt) & (gt > protocol.min_depth_m) & (gt < protocol.max_depth_m)
    if valid is not None:
        if np.shape(valid) != gt.shape:
            raise ValueError(f"valid mask shape {np.shape(valid)} differs from gt shape {gt.shape}")
        mask &= np.asarray(valid, dtype=bool)
    if protocol.crop is not None:
        top, bottom, left, right = protocol.crop.box(*gt.shape)
        inside = np.zeros_like(mask)
        inside[top:bottom, left:right] = True
        mask &= inside
    return mask
