from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
from helpers import make_sample

from schemas import CATALOG_COLUMNS, SampleError, make_sample_id, validate_catalog


def _broken(**changes):
    return replace(make_sample(), **changes)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"rgb": np.zeros((24, 32, 3), np.float32)}, "rgb"),
        ({"rgb": np.zeros((24, 32), np.uint8)}, "rgb"),
        ({"depth_m": np.ones((24, 31), np.float32), "valid": np.ones((24, 31), bool)}, "depth_m"),
        ({"depth_m": np.ones((24, 32), np.float64)}, "depth_m"),
        ({"valid": np.ones((24, 32), np.uint8)}, "valid"),
        ({"k_px": (0.0, 100.0, 16.0, 12.0)}, "k_px"),
        ({"k_px": (100.0, -1.0, 16.0, 12.0)}, "k_px"),
        ({"k_px": (100.0, 100.0, 500.0, 12.0)}, "k_px"),
        ({"k_px": (100.0, 100.0, 16.0, -90.0)}, "k_px"),
    ],
)
def test_check_names_the_field(changes, field):
    with pytest.raises(SampleError) as err:
        _broken(**changes).check()
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}:")


def test_non_finite_and_negative_depth_rejected():
    s = make_sample()
    d = s.depth_m.copy()
    d[0, 0] = np.nan
    with pytest.raises(SampleError, match="depth_m: 1 non-finite"):
        replace(s, depth_m=d).check()
    d = s.depth_m.copy()
    d[1, 1] = -2.0
    with pytest.raises(SampleError, match="depth_m: 1 negative"):
        replace(s, depth_m=d, valid=d != 0).check()


def test_valid_where_depth_zero_rejected():
    s = make_sample()
    valid = s.valid.copy()
    valid[s.depth_m == 0] = True
    with pytest.raises(SampleError, match="valid: .* valid where depth_m is 0"):
        replace(s, valid=valid).check()


def test_principal_point_off_centre_but_inside_slack_is_fine():
    replace(make_sample(), k_px=(100.0, 100.0, -10.0, 30.0)).check()


def test_sample_id_is_deterministic_and_distinct():
    a = make_sample_id("kitti", "val", "drive", "0005", "image_02")
    assert a == make_sample_id("kitti", "val", "drive", "0005", "image_02")
    assert a != make_sample_id("kitti", "val", "drive", "0005", "image_03")
    assert a.startswith("kitti/val/")


def _catalog_row(sample_id: str, **over):
    row = {f.name: None for f in CATALOG_COLUMNS}
    row.update(
        sample_id=sample_id,
        dataset="toy",
        split="train",
        scene="s",
        frame="f",
        camera="c",
        sensor="lidar",
        source_uris=["x"],
        adapter="a",
        adapter_version=1,
        height=2,
        width=3,
        fx=1.0,
        fy=1.0,
        cx=1.0,
        cy=1.0,
        valid_frac=0.5,
        depth_min_m=1.0,
        depth_median_m=2.0,
        depth_max_m=3.0,
        rgb_codec="png",
        depth_codec="u16",
        depth_scale=256.0,
        shard="s-1",
        index=0,
        rgb_bytes=1,
        depth_bytes=1,
        checksum=bytes(16),
    )
    row.update(over)
    return row


def test_catalog_validation_accepts_good_rows_and_rejects_bad_ones():
    good = pa.Table.from_pylist([_catalog_row("a"), _catalog_row("b")], schema=CATALOG_COLUMNS)
    validate_catalog(good)
    from pandera.errors import SchemaError

    for bad in (
        [_catalog_row("a"), _catalog_row("a")],
        [_catalog_row("a", height=0)],
        [_catalog_row("a", valid_frac=1.5)],
        [_catalog_row("a", sensor="camera")],
        [_catalog_row("a", dataset="Bad-Name")],
        [_catalog_row("", index=0)],
    ):
        with pytest.raises(SchemaError):
            validate_catalog(pa.Table.from_pylist(bad, schema=CATALOG_COLUMNS))
