"""DrivingStereo (drivingstereo-dataset.github.io), half-resolution release as the folders download:
  train-left-image/<seq>/<seq>_<time>.jpg                   left RGB, ~881x400 (varies per sequence)
  train-depth-map/<seq>/<seq>_<time>.png                    uint16, metres = raw / 256, 0 invalid
  calib/half-image-calib/<seq>.txt                          KITTI calib_cam_to_cam style, P_rect_101 (3x4, left)
  test-left-image/left-image-half-size/<seq>_<time>.jpg     test split, flat
  test-depth-map/depth-map-half-size/<seq>_<time>.png
  test-calib/half-image-calib/<seq>.txt
<seq> is the file name's part before the first '_'. The depth maps are LiDAR (multi-frame, model-filtered)
projected into the left camera; the disparity maps are not needed.
"""

from __future__ import annotations

from collections.abc import Iterator

from ingest.adapters.kitti import parse_calib_p_rect
from ingest.base import AdapterInfo, Item, make_sample, read_depth_png, read_rgb
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

DEPTH_SCALE = 256.0
# split -> (rgb glob, depth folder for a stem's seq, calib folder); "{seq}" is filled per item.
_LAYOUTS = {
    "train": ("train-left-image/*/*.jpg", "train-depth-map/{seq}", "calib/half-image-calib"),
    "test": (
        "test-left-image/left-image-half-size/*.jpg",
        "test-depth-map/depth-map-half-size",
        "test-calib/half-image-calib",
    ),
}


@register
class DrivingStereo:
    info = AdapterInfo(
        name="drivingstereo",
        description="DrivingStereo half-size left images + LiDAR-derived depth maps (uint16 / 256)",
        sensor="lidar",
        depth_encoding="uint16 PNG / 256 m, 0 invalid",
        intrinsics="P_rect_101 of calib/half-image-calib/<seq>.txt",
        splits="train (train-*/<seq>/), test (test-* half-size folders)",
        eval_protocol="none (training set)",
        license="not stated by the stored sources (research use)",
        verified="fixture only; layout from the project page and third-party loaders (test layout uncertain)",
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        for sub in [split] if split else list(_LAYOUTS):
            if sub not in _LAYOUTS:
                raise ValueError(f"drivingstereo has splits {', '.join(_LAYOUTS)}; got {sub!r}")
            rgb_glob, depth_dir, calib_dir = _LAYOUTS[sub]
            for rel in src.glob(rgb_glob):
                stem = rel.rsplit("/", 1)[1].removesuffix(".jpg")
                seq = stem.split("_", 1)[0]
                yield Item(
                    dataset=dataset,
                    split=sub,
                    scene=seq,
                    frame=stem,
                    camera="left",
                    files={
                        "rgb": rel,
                        "depth": f"{depth_dir.format(seq=seq)}/{stem}.png",
                        "calib": f"{calib_dir}/{seq}.txt",
                    },
                )

    def load(self, src: Source, item: Item) -> Sample:
        calib = item.files["calib"]
        k_px = parse_calib_p_rect(src.read_text(calib), "P_rect_101", calib)
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        depth = read_depth_png(src, item.files["depth"], DEPTH_SCALE)
        if depth.shape != rgb.shape[:2]:
            raise SourceError(item.files["depth"], f"depth {depth.shape} and rgb {rgb.shape[:2]} sizes differ")
        return make_sample(self.info, item, src, rgb, depth, k_px, data, fmt, DEPTH_SCALE)
