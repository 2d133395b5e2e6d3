"""Mapillary Planet-Scale Depth (MPSD) as the download unpacks:
  train.json, val.json          {image_key: {"focal": normalised focal, ...}, ...}
  train/<image_key>.jpg         RGB, larger than its depth map
  train/<image_key>.png         uint16 depth in centimetres, 0 invalid; val/ likewise
Following Meta's MapAnything converter (the only source that reads the native files): depth = raw / 100 m,
the RGB is resized to the depth map's size (area filter), fx = fy = focal * max(W, H) of the depth map,
principal point at its centre. Metric scale comes from GPS-registered SfM, so it is coarse.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import cv2

from ingest.base import AdapterInfo, Item, make_sample, read_depth_png, read_rgb
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

DEPTH_SCALE = 100.0  # raw units per metre (centimetres)
_SPLITS = ("train", "val")


@register
class MapillaryPsd:
    info = AdapterInfo(
        name="mapillary_psd",
        description="Mapillary Planet-Scale Depth, GPS-scaled SfM depth (cm), RGB resized to the depth size",
        sensor="sfm",
        depth_encoding="uint16 PNG cm (/100), 0 invalid (unit uncertain; Metric3D's re-encoding used /256)",
        intrinsics="<split>.json normalised focal x max(W, H) of the depth map, centred principal point",
        splits="train, val (<split>.json keys)",
        eval_protocol="none (training set; metric scale only GPS-level)",
        license="CC BY-NC-SA (per MapAnything's dataset table)",
        verified="fixture only; from facebookresearch/map-anything conversion/mpsd.py (single source)",
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        for sub in [split] if split else list(_SPLITS):
            if sub not in _SPLITS:
                raise ValueError(f"mapillary_psd has splits {', '.join(_SPLITS)}; got {sub!r}")
            index = f"{sub}.json"
            if split is None and not src.exists(index):
                continue  # a download may hold one split only; a split asked for by name must exist
            try:
                entries = json.loads(src.read_text(index))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{src.uri(index)}: not valid JSON ({exc})") from None
            if not isinstance(entries, dict):
                raise ValueError(
                    f"{src.uri(index)}: expected {{image_key: {{focal: ...}}}}, got {type(entries).__name__}"
                )
            for key in sorted(entries):
                meta = entries[key]
                focal = meta.get("focal") if isinstance(meta, dict) else None
                yield Item(
                    dataset=dataset,
                    split=sub,
                    scene="",
                    frame=key,
                    camera="",
                    files={"rgb": f"{sub}/{key}.jpg", "depth": f"{sub}/{key}.png"},
                    extra={"focal": focal, "index": index},
                )

    def load(self, src: Source, item: Item) -> Sample:
        focal = item.extra["focal"]
        if not isinstance(focal, (int, float)) or not focal > 0:
            raise SourceError(item.extra["index"], f"entry {item.frame!r} has no positive focal (got {focal!r})")
        depth = read_depth_png(src, item.files["depth"], DEPTH_SCALE)
        rgb, _, _ = read_rgb(src, item.files["rgb"])
        h, w = depth.shape
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        f = focal * max(w, h)
        return make_sample(self.info, item, src, rgb, depth, (f, f, w / 2, h / 2), depth_scale=DEPTH_SCALE)
