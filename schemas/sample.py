"""The canonical sample: one RGB image, its metric z-depth, the mask of ground truth and the intrinsics.

Adapters translate a dataset's native files into this and nothing else; everything after ingest reads it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

SENSOR_KINDS = (
    "lidar",
    "stereo",
    "structured_light",
    "tof",
    "laser_scanner",
    "sfm",
    "rendered",
    "synthetic",
)
SPLITS = ("train", "val", "test")
# Depth with fewer valid pixels than this fraction is sparse (lidar, SfM): the store keeps it as points and
# the loader moves each point when resizing; denser maps are stored as maps and resized by nearest neighbour.
SPARSE_VALID_FRAC = 0.5

# A principal point may sit off-centre (crops, converted datasets) but not this far outside the image:
# beyond one image size off the border it is a units or convention error (normalised or swapped values).
_PP_SLACK = 1.0


class SampleError(ValueError):
    """A sample breaks the canonical contract. `field` names what is wrong."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def make_sample_id(dataset: str, split: str, scene: str, frame: str, camera: str) -> str:
    """Deterministic id: the same native frame always gets the same id, so re-runs skip it.

    Readable prefix for people, short hash of the full key so ids stay unique and path-safe.
    """
    key = "\x1f".join((dataset, split, scene, frame, camera))
    digest = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
    return f"{dataset}/{split}/{digest}"


@dataclass(frozen=True)
class SampleMeta:
    sample_id: str
    dataset: str
    split: str
    scene: str
    frame: str
    camera: str
    sensor: str
    source_uris: tuple[str, ...]
    adapter: str
    adapter_version: int
    # Native integer depth encoding, depth_m = raw / depth_scale (256 for KITTI, 1000 for mm). The store
    # keeps such depth as the integers (lossless, half the bytes of float32); None means float depth.
    depth_scale: float | None = None

    def check(self) -> None:
        if not self.sample_id:
            raise SampleError("sample_id", "empty")
        if self.sensor not in SENSOR_KINDS:
            raise SampleError("sensor", f"{self.sensor!r} is not one of {', '.join(SENSOR_KINDS)}")
        if self.split not in SPLITS:
            raise SampleError("split", f"{self.split!r} is not one of {', '.join(SPLITS)}")
        if self.depth_scale is not None and not self.depth_scale > 0:
            raise SampleError("depth_scale", f"must be > 0, got {self.depth_scale}")


@dataclass(frozen=True)
class Sample:
    """rgb uint8 HxWx3; depth_m float32 HxW (z along the optical axis, 0 where unknown);
    valid bool HxW, true exactly where depth_m holds ground truth; k_px = (fx, fy, cx, cy) in pixels."""

    rgb: np.ndarray
    depth_m: np.ndarray
    valid: np.ndarray
    k_px: tuple[float, float, float, float]
    meta: SampleMeta
    # The source file's encoded bytes when `rgb` is exactly their decode (store.codecs.decode_image);
    # lets the store keep the original bytes instead of re-encoding. None when the adapter changed pixels.
    rgb_source: bytes | None = field(default=None, repr=False)
    rgb_format: str | None = None

    def check(self) -> Sample:
        """Raise SampleError naming the field when the arrays break the contract; return self."""
        rgb, depth, valid = self.rgb, self.depth_m, self.valid
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8:
            raise SampleError("rgb", f"dtype must be uint8, got {getattr(rgb, 'dtype', type(rgb))}")
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise SampleError("rgb", f"shape must be HxWx3, got {rgb.shape}")
        if not isinstance(depth, np.ndarray) or depth.dtype != np.float32:
            raise SampleError("depth_m", f"dtype must be float32, got {getattr(depth, 'dtype', type(depth))}")
        if not isinstance(valid, np.ndarray) or valid.dtype != np.bool_:
            raise SampleError("valid", f"dtype must be bool, got {getattr(valid, 'dtype', type(valid))}")
        h, w = rgb.shape[:2]
        if depth.shape != (h, w):
            raise SampleError("depth_m", f"shape {depth.shape} disagrees with rgb {h}x{w}")
        if valid.shape != (h, w):
            raise SampleError("valid", f"shape {valid.shape} disagrees with rgb {h}x{w}")
        if not np.isfinite(depth).all():
            raise SampleError("depth_m", f"{int((~np.isfinite(depth)).sum())} non-finite values")
        if (depth < 0).any():
            raise SampleError("depth_m", f"{int((depth < 0).sum())} negative values (min {depth.min():g} m)")
        if (valid & (depth == 0)).any():
            raise SampleError("valid", f"{int((valid & (depth == 0)).sum())} pixels valid where depth_m is 0")
        if (~valid & (depth != 0)).any():
            raise SampleError("depth_m", "non-zero where valid is false: set depth_m to 0 where unknown")
        if len(self.k_px) != 4:
            raise SampleError("k_px", f"must be (fx, fy, cx, cy), got {self.k_px!r}")
        fx, fy, cx, cy = (float(v) for v in self.k_px)
        if not (np.isfinite([fx, fy, cx, cy]).all()):
            raise SampleError("k_px", f"non-finite intrinsics {self.k_px!r}")
        if fx <= 0 or fy <= 0:
            raise SampleError("k_px", f"focal must be > 0, got fx={fx:g} fy={fy:g}")
        if not (-_PP_SLACK * w <= cx <= (1 + _PP_SLACK) * w and -_PP_SLACK * h <= cy <= (1 + _PP_SLACK) * h):
            raise SampleError("k_px", f"principal point ({cx:g}, {cy:g}) far outside the {w}x{h} image")
        self.meta.check()
        return self


def depth_stats(depth_m: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """valid fraction and min/median/max of valid depth in metres (NaN when nothing is valid)."""
    values = depth_m[valid]
    if values.size == 0:
        nan = float("nan")
        return {"valid_frac": 0.0, "depth_min_m": nan, "depth_median_m": nan, "depth_max_m": nan}
    return {
        "valid_frac": float(values.size / valid.size),
        "depth_min_m": float(values.min()),
        "depth_median_m": float(np.median(values)),
        "depth_max_m": float(values.max()),
    }


__all__ = ["SENSOR_KINDS", "SPLITS", "Sample", "SampleError", "SampleMeta", "depth_stats"]
