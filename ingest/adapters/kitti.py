"""KITTI depth: raw images + data_depth_annotated ground truth + raw calibration, as the downloads unpack.

--src holds the raw date folders and the annotated depth side by side:
  <date>/calib_cam_to_cam.txt
  <date>/<date>_drive_<XXXX>_sync/image_02/data/<frame:010d>.png        (image_03 for the right camera)
  data_depth_annotated/{train,val}/<drive>/proj_depth/groundtruth/image_02/<frame>.png   uint16 / 256 m
Splits: train, val (the annotated folders); test = the Eigen test list `eigen_test_files_with_gt.txt`
(BTS format, one `rgb_path depth_path focal` a line, `None` where no ground truth) placed in --src.
"""

from __future__ import annotations

from collections.abc import Iterator

from ingest.base import AdapterInfo, Item, make_sample, read_depth_png, read_rgb
from ingest.registry import register
from ingest.source import Source, SourceError
from schemas.sample import Sample

DEPTH_SCALE = 256.0
_ANNOTATED = "data_depth_annotated"
_EIGEN_TEST = "eigen_test_files_with_gt.txt"
_CAMERAS = {"image_02": "P_rect_02", "image_03": "P_rect_03"}


def parse_calib_p_rect(text: str, key: str, file: str) -> tuple[float, float, float, float]:
    """fx, fy, cx, cy from `P_rect_0X` (3x4 row-major): fx = P[0], cx = P[2], fy = P[5], cy = P[6]."""
    for line in text.splitlines():
        name, _, values = line.partition(":")
        if name.strip() == key:
            p = [float(v) for v in values.split()]
            if len(p) != 12:
                raise SourceError(file, f"{key} has {len(p)} values, expected 12")
            return p[0], p[5], p[2], p[6]
    raise SourceError(file, f"no {key} entry in the calibration file")


def _drive_date(drive: str) -> str:
    return drive[:10]  # "2011_09_26_drive_0001_sync" -> "2011_09_26"


@register
class Kitti:
    info = AdapterInfo(
        name="kitti",
        description="KITTI depth (raw image_02/03 + data_depth_annotated, P_rect intrinsics, Eigen test list)",
        sensor="lidar",
        depth_encoding="uint16 PNG / 256 m, 0 invalid",
        intrinsics="P_rect_02 / P_rect_03 of <date>/calib_cam_to_cam.txt",
        splits="train, val (data_depth_annotated), test (eigen_test_files_with_gt.txt)",
        eval_protocol="kitti",
        license="CC BY-NC-SA 3.0",
        verified="real frames (metric3d_demo/kitti_demo) laid out in the native tree",
    )

    def items(self, src: Source, split: str | None, dataset: str) -> Iterator[Item]:
        if split == "test":
            yield from self._eigen_items(src, dataset)
            return
        for sub in [split] if split else ["train", "val"]:
            if sub not in ("train", "val"):
                raise ValueError(f"kitti has splits train, val, test; got {sub!r}")
            for rel in src.glob(f"{_ANNOTATED}/{sub}/*/proj_depth/groundtruth/image_0[23]/*.png"):
                parts = rel.split("/")
                drive, camera, name = parts[2], parts[5], parts[6]
                yield self._item(dataset, sub, drive, camera, name, rel)

    def _item(self, dataset: str, split: str, drive: str, camera: str, name: str, depth_rel: str) -> Item:
        date = _drive_date(drive)
        return Item(
            dataset=dataset,
            split=split,
            scene=drive,
            frame=name.removesuffix(".png"),
            camera=camera,
            files={
                "rgb": f"{date}/{drive}/{camera}/data/{name}",
                "depth": depth_rel,
                "calib": f"{date}/calib_cam_to_cam.txt",
            },
        )

    def _eigen_items(self, src: Source, dataset: str) -> Iterator[Item]:
        for n, line in enumerate(src.read_text(_EIGEN_TEST).splitlines(), start=1):
            fields = line.split()
            if len(fields) < 2 or fields[1] == "None":
                continue  # the 45 Eigen frames without annotated depth
            parts = fields[0].split("/")
            if len(parts) != 5:
                raise SourceError(_EIGEN_TEST, f"line {n}: expected <date>/<drive>/image_0X/data/<frame>.png")
            _, drive, camera, _, name = parts
            # The list names depth relative to the annotated root; the frame sits in its train or val half.
            candidates = [f"{_ANNOTATED}/{sub}/{fields[1]}" for sub in ("train", "val")]
            rel = next((c for c in candidates if src.exists(c)), candidates[-1])
            yield self._item(dataset, "test", drive, camera, name, rel)

    def load(self, src: Source, item: Item) -> Sample:
        calib = item.files["calib"]
        k_px = parse_calib_p_rect(src.read_text(calib), _CAMERAS[item.camera], calib)
        rgb, data, fmt = read_rgb(src, item.files["rgb"])
        depth = read_depth_png(src, item.files["depth"], DEPTH_SCALE)
        if depth.shape != rgb.shape[:2]:
            raise SourceError(item.files["depth"], f"depth {depth.shape} and rgb {rgb.shape[:2]} sizes differ")
        return make_sample(self.info, item, src, rgb, depth, k_px, data, fmt, DEPTH_SCALE)
