"""DIML/CVL RGB-D, indoor (Kinect v2) and outdoor (ZED stereo) downloads side by side under --src:
  indoor/<HR|LR>/<scene>/color/<name>_c.png  +  indoor/<HR|LR>/<scene>/depth_filled/<name>_depth_filled.png
  outdoor/<HR|LR>/<scene>/outleft/<name>.png +  outdoor/<HR|LR>/<scene>/depthmap/<name>.png
Depth: uint16 PNG in millimetres, 0 invalid (indoor native mm; outdoor mm as the public loaders read it).
No calibration ships with the common packs. The intrinsics are an assumption, recorded as such: a
1920x1080 focal scaled to the image width (indoor: the Kinect v2 colour camera's nominal 1081.37 px;
outdoor: Metric3D's DIML value 1398.402 px), principal point at the image centre.
"""

from __future__ import annotations

from collections.abc import Iterator

from ingest.base import AdapterInfo, Item, make_sample, read_depth_png, read_rgb
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

DEPTH_SCALE = 1000.0
# kind -> (rgb glob under --src, rgb suffix, depth folder, depth suffix, sensor, focal in px at 1920 wide)
_LAYOUTS = {
    "indoor": ("indoor/*/*/color/*_c.png", "_c.png", "depth_filled", "_depth_filled.png", "tof", 1081.37),
    "outdoor": ("outdoor/*/*/outleft/*.png", ".png", "depthmap", ".png", "stereo", 1398.402),
}
_REFERENCE_WIDTH = 1920.0


@register
class Diml:
    info = AdapterInfo(
        name="diml",
        description="DIML/CVL RGB-D indoor (Kinect v2, filled) and outdoor (ZED stereo), uint16 mm",
        sensor="tof",
        depth_encoding="uint16 PNG mm (/1000), 0 invalid (outdoor unit from public loaders, uncertain)",
        intrinsics="not shipped: assumed f = 1081.37 (indoor) / 1398.402 (outdoor) px x W/1920, centre",
        splits="train (indoor/ and outdoor/, every resolution folder)",
        eval_protocol="none (training set); ZoeDepth: indoor Eigen crop 10 m, outdoor Garg crop 2-80 m",
        license="not stated by the stored sources (research only, request form)",
        verified="fixture only; layout from the ZoeDepth DIML test loaders (partly uncertain), intrinsics assumed",
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        if split not in (None, "train"):
            raise ValueError(f"diml has split train; got {split!r}")
        for kind, (rgb_glob, rgb_suffix, depth_dir, depth_suffix, _, _) in _LAYOUTS.items():
            for rel in src.glob(rgb_glob):
                _, res, scene, _, name = rel.split("/")
                stem = name.removesuffix(rgb_suffix)
                yield Item(
                    dataset=dataset,
                    split="train",
                    scene=f"{kind}/{res}/{scene}",
                    frame=stem,
                    camera=kind,
                    files={"rgb": rel, "depth": f"{kind}/{res}/{scene}/{depth_dir}/{stem}{depth_suffix}"},
                )

    def load(self, src: Source, item: Item) -> Sample:
        *_, sensor, focal_1920 = _LAYOUTS[item.camera]
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        depth = read_depth_png(src, item.files["depth"], DEPTH_SCALE)
        if depth.shape != rgb.shape[:2]:
            raise SourceError(item.files["depth"], f"depth {depth.shape} and rgb {rgb.shape[:2]} sizes differ")
        h, w = depth.shape
        f = focal_1920 * w / _REFERENCE_WIDTH
        return make_sample(self.info, item, src, rgb, depth, (f, f, w / 2, h / 2), data, fmt, DEPTH_SCALE, sensor)
