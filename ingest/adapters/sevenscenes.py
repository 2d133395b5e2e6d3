"""Microsoft RGB-D 7-Scenes as the per-sequence zips unpack:
  <scene>/TrainSplit.txt, <scene>/TestSplit.txt     one `sequenceN` a line
  <scene>/seq-XX/frame-XXXXXX.color.png             RGB 640x480
  <scene>/seq-XX/frame-XXXXXX.depth.png             uint16 mm, 65535 = invalid, in the *depth* camera

Depth and colour are not registered and no calibration ships. Following the project page (depth camera
f = 585 px, principal point (320, 240)) and the usual RGB focal of 525 px, each depth pixel is lifted
to 3-D with the depth intrinsics and projected into the colour image with the RGB intrinsics
(nearest z kept per pixel). The depth-to-colour extrinsic is unknown and taken as identity, so the
~2.5 cm Kinect v1 baseline is ignored: expect a parallax of a few pixels at close range.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np

from ingest.base import AdapterInfo, Item, make_sample, read_depth_png, read_rgb
from ingest.geometry import project_to_depth
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

DEPTH_SCALE = 1000.0
INVALID_RAW = 65535
K_DEPTH = (585.0, 585.0, 320.0, 240.0)  # project page, KinectFusion defaults (pixels)
K_RGB = (525.0, 525.0, 320.0, 240.0)  # commonly assumed Kinect v1 colour camera (pixels)
_SPLIT_FILES = {"train": "TrainSplit.txt", "test": "TestSplit.txt"}


def depth_to_colour(depth_m: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Depth-camera z map -> colour-camera z map: lift with K_DEPTH, project with K_RGB (z unchanged)."""
    fx, fy, cx, cy = K_DEPTH
    v, u = np.nonzero(depth_m > 0)
    z = depth_m[v, u].astype(np.float64)
    points = np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], axis=1)
    return project_to_depth(points, K_RGB, hw)


@register
class SevenScenes:
    info = AdapterInfo(
        name="sevenscenes",
        description="Microsoft 7-Scenes Kinect v1, mm depth re-projected into the colour camera",
        sensor="structured_light",
        depth_encoding="uint16 PNG mm (/1000), 65535 invalid; depth camera, re-projected to colour",
        intrinsics="not shipped: RGB f 525, c (320, 240) assumed; depth f 585, c (320, 240) (project page)",
        splits="train, test (per-scene TrainSplit.txt / TestSplit.txt)",
        eval_protocol="sevenscenes: no crop, cap 10 m",
        license="Microsoft non-commercial research terms (uncertain)",
        verified="fixture only; layout and encoding from the project page; registration assumed (no extrinsic)",
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        for sub in [split] if split else list(_SPLIT_FILES):
            if sub not in _SPLIT_FILES:
                raise ValueError(f"sevenscenes has splits {', '.join(_SPLIT_FILES)}; got {sub!r}")
            for scene_file in src.glob(f"*/{_SPLIT_FILES[sub]}"):
                scene = scene_file.split("/")[0]
                numbers = re.findall(r"\d+", src.read_text(scene_file))
                for seq in (f"seq-{int(n):02d}" for n in numbers):
                    for rel in src.glob(f"{scene}/{seq}/frame-*.color.png"):
                        frame = rel.rsplit("/", 1)[1].removesuffix(".color.png")
                        yield Item(
                            dataset=dataset,
                            split=sub,
                            scene=f"{scene}/{seq}",
                            frame=frame,
                            camera="kinect",
                            files={"rgb": rel, "depth": f"{scene}/{seq}/{frame}.depth.png"},
                        )

    def load(self, src: Source, item: Item) -> Sample:
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        raw_m = read_depth_png(src, item.files["depth"], DEPTH_SCALE, invalid_raw=INVALID_RAW)
        if raw_m.shape != rgb.shape[:2]:
            raise SourceError(item.files["depth"], f"depth {raw_m.shape} and rgb {rgb.shape[:2]} sizes differ")
        depth = depth_to_colour(raw_m, rgb.shape[:2])
        return make_sample(self.info, item, src, rgb, depth, K_RGB, data, fmt, DEPTH_SCALE)
