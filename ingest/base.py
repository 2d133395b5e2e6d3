"""What an adapter is: a frozen record of facts about a dataset plus a listing and a per-item load.

`items()` runs once on the driver and must be cheap (file names only); `load()` runs in Ray tasks and
turns one item into a canonical Sample. Nothing dataset-specific exists outside the adapter's module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ingest.source import Source, SourceError
from schemas.sample import Sample, SampleMeta, make_sample_id
from store.codecs import DecodeError, decode_image, decode_rgb, depth_from_u16, image_format


@dataclass(frozen=True)
class AdapterInfo:
    """Facts about a dataset source. `shares`: (other adapter, what) pairs for sources that hold the same images or
    scenes as another adapter's, e.g. ("nyu", "NYUv2 frames"); evaluation reads them (symmetrically) to call a
    benchmark in-domain for a model trained on either (eval.domain)."""

    name: str
    description: str
    sensor: str
    depth_encoding: str
    intrinsics: str
    splits: str
    eval_protocol: str = "default"
    license: str = "see the dataset's terms"
    verified: str = ""
    version: int = 1
    shares: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Item:
    """One future sample: ids and the files it reads (relative to the dataset root)."""

    dataset: str
    split: str
    scene: str
    frame: str
    camera: str
    files: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sample_id(self) -> str:
        return make_sample_id(self.dataset, self.split, self.scene, self.frame, self.camera)

    @property
    def key(self) -> str:
        return "/".join(p for p in (self.scene, self.camera, self.frame) if p)

    @property
    def main_file(self) -> str:
        return next(iter(self.files.values()), "")


class Adapter(Protocol):
    info: AdapterInfo

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]: ...

    def load(self, src: Source, item: Item) -> Sample: ...


def lookup(doc: Any, path: str, file: str) -> Any:
    """The value at a dotted path of a parsed JSON/YAML document; a missing key names the path and the file."""
    value = doc
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise SourceError(file, f"no {path} entry")
        value = value[key]
    return value


def read_rgb(src: Source, rel: str) -> tuple[np.ndarray, bytes, str]:
    """(rgb uint8 HxWx3, the file's bytes, 'jpeg'|'png'); errors name the file."""
    data = src.read_bytes(rel)
    try:
        return decode_rgb(data), data, image_format(data)
    except DecodeError as exc:
        raise SourceError(rel, str(exc)) from None


def read_depth_png(src: Source, rel: str, depth_scale: float, invalid_raw: int | None = None) -> np.ndarray:
    """uint16 depth PNG -> metres (float32), 0 = no ground truth. `invalid_raw` marks a sentinel value."""
    data = src.read_bytes(rel)
    try:
        raw = decode_image(data)
    except DecodeError as exc:
        raise SourceError(rel, str(exc)) from None
    if raw.ndim != 2 or raw.dtype != np.uint16:
        raise SourceError(rel, f"depth PNG must be single-channel uint16, got {raw.dtype} with shape {raw.shape}")
    if invalid_raw is not None:
        raw = np.where(raw == invalid_raw, 0, raw).astype(np.uint16)
    return depth_from_u16(raw, depth_scale)


def make_sample(
    info: AdapterInfo,
    item: Item,
    src: Source,
    rgb: np.ndarray,
    depth_m: np.ndarray,
    k_px: tuple[float, float, float, float],
    rgb_source: bytes | None = None,
    rgb_format: str | None = None,
    depth_scale: float | None = None,
    sensor: str | None = None,
) -> Sample:
    """Assemble and check the canonical sample; a broken contract becomes a SourceError on the main file."""
    meta = SampleMeta(
        sample_id=item.sample_id,
        dataset=item.dataset,
        split=item.split,
        scene=item.scene,
        frame=item.frame,
        camera=item.camera,
        sensor=sensor or info.sensor,
        source_uris=tuple(src.uri(f) for f in item.files.values()),
        adapter=info.name,
        adapter_version=info.version,
        depth_scale=depth_scale,
    )
    sample = Sample(
        rgb=rgb,
        depth_m=depth_m,
        valid=depth_m > 0,
        k_px=tuple(float(v) for v in k_px),
        meta=meta,
        rgb_source=rgb_source,
        rgb_format=rgb_format,
    )
    return sample.check()
