"""NYU Depth v2 in the BTS layouts: `sync/<scene>/rgb_N.jpg + sync_depth_N.png` (train) and
`official_splits/test/<scene_type>/rgb_N.jpg + sync_depth_N.png` (the 654 Eigen test images).
Depth uint16 PNG in millimetres, 0 invalid; intrinsics are the NYU toolbox's RGB camera constants."""

from __future__ import annotations

from collections.abc import Iterator

from ingest.base import AdapterInfo, Item, make_sample, read_depth_png, read_rgb
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

DEPTH_SCALE = 1000.0
# NYU toolbox camera_params.m, RGB camera (pixels).
K_PX = (518.8579, 519.46961, 325.58245, 253.73617)
_LAYOUTS = {"train": "sync/*/rgb_*.jpg", "test": "official_splits/test/*/rgb_*.jpg"}


@register
class Nyu:
    info = AdapterInfo(
        name="nyu",
        description="NYU Depth v2, BTS sync (train) and official test (654) layouts, uint16 mm",
        sensor="structured_light",
        depth_encoding="uint16 PNG mm (/1000), 0 invalid",
        intrinsics="NYU toolbox constants fx 518.8579 fy 519.4696 cx 325.5824 cy 253.7362",
        splits="train (sync/), test (official_splits/test/)",
        eval_protocol="nyu",
        license="not stated by the source",
        verified="real frames (metric3d_demo/nyu_demo) laid out in both trees",
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        for sub in [split] if split else list(_LAYOUTS):
            if sub not in _LAYOUTS:
                raise ValueError(f"nyu has splits {', '.join(_LAYOUTS)}; got {sub!r}")
            for rel in src.glob(_LAYOUTS[sub]):
                folder, name = rel.rsplit("/", 1)
                index = name.removeprefix("rgb_").removesuffix(".jpg")
                yield Item(
                    dataset=dataset,
                    split=sub,
                    scene=folder.rsplit("/", 1)[-1],
                    frame=index,
                    camera="kinect",
                    files={"rgb": rel, "depth": f"{folder}/sync_depth_{index}.png"},
                )

    def load(self, src: Source, item: Item) -> Sample:
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        depth = read_depth_png(src, item.files["depth"], DEPTH_SCALE)
        if depth.shape != rgb.shape[:2]:
            raise SourceError(item.files["depth"], f"depth {depth.shape} and rgb {rgb.shape[:2]} sizes differ")
        return make_sample(self.info, item, src, rgb, depth, K_PX, data, fmt, DEPTH_SCALE)
