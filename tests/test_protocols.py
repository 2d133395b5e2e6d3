"""Protocol rows applied to known arrays: exact counts of scored pixels for crops, depth ranges and masks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from eval.protocols import (
    DEFAULT_MAX_DEPTH_M,
    PROTOCOLS,
    Crop,
    default_protocol,
    eval_mask,
    get_protocol,
    protocol_for,
)
from schemas.sample import SENSOR_KINDS


def test_nyu_eigen_crop_on_480x640() -> None:
    gt = np.full((480, 640), 5.0, dtype=np.float32)
    mask = eval_mask(gt, get_protocol("nyu"))
    assert mask.sum() == (471 - 45) * (601 - 41) == 238_560
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (45, 470, 41, 600)


def test_ibims_uses_the_eigen_crop_and_10_m() -> None:
    gt = np.full((480, 640), 5.0)
    gt[100, 100] = 10.0  # inside the crop, at the cap: not scored (strict)
    gt[0, 0] = 0.0  # outside the crop anyway
    assert eval_mask(gt, get_protocol("ibims")).sum() == 238_560 - 1


def test_kitti_garg_crop_truncates_fractions() -> None:
    gt = np.full((375, 1242), 20.0)
    mask = eval_mask(gt, get_protocol("kitti"))
    # rows int(0.40810811 * 375) = 153 .. int(0.99189189 * 375) = 371; cols int(0.03594771 * 1242) = 44 .. 1197
    assert mask.sum() == (371 - 153) * (1197 - 44) == 251_354
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (153, 370, 44, 1196)
    assert get_protocol("kitti").crop.box(10, 10) == (4, 9, 0, 9)
    assert eval_mask(np.full((10, 10), 1.0), get_protocol("kitti")).sum() == 5 * 9


def test_depth_range_is_strict_and_drops_non_finite() -> None:
    gt = np.array([[0.0, 1e-3, 0.002, 5.0, 9.999], [10.0, 11.0, np.nan, np.inf, -1.0]])
    no_crop = protocol_for("nyu", "structured_light", overrides={"crop": None})
    np.testing.assert_array_equal(eval_mask(gt, no_crop), [[0, 0, 1, 1, 1], [0, 0, 0, 0, 0]])
    ddad = get_protocol("ddad")  # 0-200 m: any positive depth below 200 m
    assert eval_mask(np.array([[0.0, 1e-6, 199.9, 200.0]]), ddad).tolist() == [[False, True, True, False]]


def test_sample_valid_mask_is_combined() -> None:
    gt = np.full((4, 5), 3.0)
    valid = np.zeros((4, 5), dtype=bool)
    valid[1:3, 1:4] = True
    assert eval_mask(gt, default_protocol("lidar"), valid).sum() == 6
    with pytest.raises(ValueError, match="valid mask shape"):
        eval_mask(gt, default_protocol("lidar"), valid[:2])


def test_pixel_crop_refuses_another_image_size() -> None:
    with pytest.raises(ValueError, match="defined in pixels of 480x640 images; got 240x320"):
        eval_mask(np.ones((240, 320)), get_protocol("nyu"))
    # The fix the message names: a fractional crop.
    half = protocol_for("nyu", "structured_light", overrides={"crop": Crop(45 / 480, 471 / 480, 41 / 640, 601 / 640)})
    assert eval_mask(np.ones((240, 320)), half).sum() == (235 - 22) * (300 - 20)


def test_table_rows() -> None:
    assert {"nyu", "kitti", "ddad", "diode", "eth3d", "nuscenes", "sevenscenes", "ibims", "scannet"} <= set(PROTOCOLS)
    rows = {n: (p.min_depth_m, p.max_depth_m, p.crop is None, p.split) for n, p in PROTOCOLS.items()}
    assert rows["nyu"] == (1e-3, 10.0, False, "test")
    assert rows["kitti"] == (1e-3, 80.0, False, "test")
    assert rows["ddad"] == (0.0, 200.0, True, "val")
    assert rows["diode"] == (0.1, 150.0, True, "val")
    assert rows["eth3d"][1:3] == (100.0, True)
    assert rows["sevenscenes"][1] == rows["scannet"][1] == rows["ibims"][1] == 10.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROTOCOLS["nyu"].max_depth_m = 20.0  # type: ignore[misc]


def test_default_protocol_for_any_other_dataset() -> None:
    assert set(DEFAULT_MAX_DEPTH_M) == set(SENSOR_KINDS)
    p = protocol_for("my_garage_scans", "tof")
    assert (p.name, p.crop, p.min_depth_m, p.max_depth_m, p.split) == ("default_tof", None, 1e-3, 10.0, None)
    assert protocol_for("somewhere", "lidar").max_depth_m == 80.0
    assert protocol_for("kitti", "stereo") is PROTOCOLS["kitti"]  # a standard dataset keeps its own row


def test_overrides_and_explicit_names() -> None:
    p = protocol_for("nyu_mini", "tof", name="nyu", overrides={"max_depth_m": 20.0, "split": "val"})
    assert (p.name, p.crop, p.max_depth_m, p.split) == ("nyu", PROTOCOLS["nyu"].crop, 20.0, "val")
    assert PROTOCOLS["nyu"].max_depth_m == 10.0  # the table is not mutated
    with pytest.raises(KeyError, match=r"unknown protocol 'nyu2'; valid: ddad, diode, eth3d, .*, sevenscenes"):
        protocol_for("nyu2", "tof", name="nyu2")
    with pytest.raises(KeyError, match="unknown protocol field.* max_depth; valid: crop, max_depth_m"):
        protocol_for("nyu", "tof", overrides={"max_depth": 5})
    with pytest.raises(KeyError, match="unknown sensor kind 'radar'; valid: lidar, stereo"):
        protocol_for("elsewhere", "radar")
    with pytest.raises(ValueError, match="need 0 <= min_depth_m < max_depth_m"):
        protocol_for("nyu", "tof", overrides={"min_depth_m": 12.0})
    with pytest.raises(ValueError, match="empty or outside"):
        Crop(0.5, 0.4, 0.0, 1.0)
