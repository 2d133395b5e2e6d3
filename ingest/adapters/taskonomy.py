"""Taskonomy (StanfordVL/taskonomy) in either of its two download layouts:
  per building:  <building>/rgb/point_<P>_view_<V>_domain_rgb.png
                 <building>/depth_zbuffer/point_<P>_view_<V>_domain_depth_zbuffer.png
                 <building>/points/point_<P>_view_<V>_domain_fixatedpose.json
  Omnidata:      rgb/taskonomy/<building>/point_<P>_view_<V>_domain_rgb.png
                 depth_zbuffer/taskonomy/<building>/..._domain_depth_zbuffer.png
                 point_info/taskonomy/<building>/..._domain_point_info.json
Depth: z-buffer (planar z) uint16 PNG in 1/512 m, 65535 = no mesh (invalid), 0 also invalid.
Intrinsics per view from its JSON: `field_of_view_rads` is horizontal, f = (W/2) / tan(fov/2) for the
image as loaded (so rgb_large works too), principal point at the centre, square pixels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

from ingest.base import AdapterInfo, Item, make_sample, read_depth_png, read_rgb
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

DEPTH_SCALE = 512.0
INVALID_RAW = 65535
# layout -> (rgb glob, folder template, pose-JSON folder template, pose-JSON domain); {b} = building.
_LAYOUTS = {
    "building": ("*/rgb/point_*_domain_rgb.png", "{b}/{domain}", "{b}/points", "fixatedpose"),
    "omnidata": (
        "rgb/taskonomy/*/point_*_domain_rgb.png",
        "{domain}/taskonomy/{b}",
        "point_info/taskonomy/{b}",
        "point_info",
    ),
}


def focal_from_fov(text: str, file: str, width: int) -> float:
    try:
        fov = float(json.loads(text)["field_of_view_rads"])
    except json.JSONDecodeError as exc:
        raise SourceError(file, f"not valid JSON ({exc})") from None
    except (KeyError, TypeError, ValueError):
        raise SourceError(file, "no numeric field_of_view_rads") from None
    if not 0 < fov < math.pi:
        raise SourceError(file, f"field_of_view_rads {fov} is not in (0, pi)")
    return (width / 2) / math.tan(fov / 2)


@register
class Taskonomy:
    info = AdapterInfo(
        name="taskonomy",
        description="Taskonomy mesh renders (per-building or Omnidata layout), z-buffer depth / 512",
        sensor="rendered",
        depth_encoding="uint16 PNG / 512 m (z-buffer), 65535 invalid",
        intrinsics="per view field_of_view_rads (horizontal) of the point JSON: f = (W/2)/tan(fov/2), centre",
        splits="train (every building)",
        eval_protocol="none (training set)",
        license="not stated by the stored sources (Omnidata terms; the downloader asks for agreement)",
        verified="fixture only; formats from StanfordVL/taskonomy data/README and Omnidata loaders",
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        if split not in (None, "train"):
            raise ValueError(f"taskonomy has split train; got {split!r}")
        for layout, (rgb_glob, folder, pose_folder, pose_domain) in _LAYOUTS.items():
            for rel in src.glob(rgb_glob):
                view = rel.rsplit("/", 1)[1].removesuffix("_domain_rgb.png")
                building = rel.split("/")[0 if layout == "building" else 2]
                yield Item(
                    dataset=dataset,
                    split="train",
                    scene=building,
                    frame=view,
                    camera="render",
                    files={
                        "rgb": rel,
                        "depth": f"{folder.format(b=building, domain='depth_zbuffer')}/{view}_domain_depth_zbuffer.png",
                        "pose": f"{pose_folder.format(b=building)}/{view}_domain_{pose_domain}.json",
                    },
                )

    def load(self, src: Source, item: Item) -> Sample:
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        depth = read_depth_png(src, item.files["depth"], DEPTH_SCALE, invalid_raw=INVALID_RAW)
        if depth.shape != rgb.shape[:2]:
            raise SourceError(item.files["depth"], f"depth {depth.shape} and rgb {rgb.shape[:2]} sizes differ")
        h, w = depth.shape
        f = focal_from_fov(src.read_text(item.files["pose"]), item.files["pose"], w)
        return make_sample(self.info, item, src, rgb, depth, (f, f, w / 2, h / 2), data, fmt, DEPTH_SCALE)
