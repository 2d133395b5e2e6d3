"""The CSTM ablation's focal diagnostic and tables, on hand-made per-sample records (no training)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from eval.ablation import markdown, per_camera, plot, train_focal_px

pytestmark = pytest.mark.timeout(60)


def _sample(sample_id: str, median_scale: float, abs_rel: float, delta1: float) -> dict:
    """A report.json per-sample record: metric-mode metrics and the median alignment's scale median(gt)/median(pred)."""
    return {
        "sample_id": sample_id,
        "modes": {
            "metric": {"abs_rel": abs_rel, "delta1": delta1},
            "median": {"scale": median_scale, "abs_rel": 0.0, "delta1": 1.0},
        },
    }


def test_train_focal_is_the_geometric_mean_seen_through_the_resize() -> None:
    assert train_focal_px([100.0, 400.0], (1.0, 1.0)) == pytest.approx(200.0, rel=1e-12)
    assert train_focal_px([100.0, 100.0, 800.0], (2.0, 2.0)) == pytest.approx(400.0, rel=1e-12)
    # r ~ U(1, e): E[ln r] = (e ln e - e - 1 ln 1 + 1) / (e - 1) = 1 / (e - 1)
    assert train_focal_px([200.0], (1.0, math.e)) == pytest.approx(200.0 * math.exp(1 / (math.e - 1)), rel=1e-12)


def test_per_camera_ratios_are_inverse_median_scales_averaged_geometrically() -> None:
    samples = [
        _sample("a", 0.5, 0.2, 0.5),  # median(pred) / median(gt) = 2
        _sample("b", 2.0, 0.4, 1.0),  # 0.5
        _sample("c", 4.0, 0.75, 0.0),  # 0.25
    ]
    got = per_camera(samples, {"a": 200.0, "b": 200.0, "c": 450.0})
    assert list(got) == [200.0, 450.0]
    assert got[200.0]["n"] == 2 and got[200.0]["image_ratios"] == [2.0, 0.5]
    assert got[200.0]["median_ratio"] == pytest.approx(1.0, abs=1e-12)  # sqrt(2 x 0.5)
    assert got[200.0]["abs_rel"] == pytest.approx(0.3) and got[200.0]["delta1"] == pytest.approx(0.75)
    assert got[450.0] == {
        "n": 1,
        "abs_rel": 0.75,
        "delta1": 0.0,
        "median_abs_rel": 0.0,
        "median_ratio": pytest.approx(0.25),
        "image_ratios": [0.25],
    }


def _summary() -> dict:
    """Two seeds, every mode and scale, one unseen camera at f = 200 px, f_train = 250 px, fit shrink 0.5."""
    rows = []
    for seed in (0, 1):
        for scale in ("native", "fit"):
            for mode, abs_rel in (("none", 0.4), ("label", 0.1 * (seed + 1)), ("image", 0.3)):
                ratio = 1.25 if mode == "none" else 1.0
                run = {"mode": mode, "seed": seed, "scale": scale, "n": 2, "abs_rel": abs_rel, "delta1": 0.5}
                run["median_abs_rel"] = 0.05
                rows.append({**run, "f_test_px": 200.0, "median_ratio": ratio, "image_ratios": [ratio, ratio]})
                rows.append({**run, "f_test_px": None})
    return {
        "f_train_px": 250.0,
        "val_cameras": [{"name": "cam_f200", "f_px": 200.0, "fit_shrink": 0.5}],
        "rows": rows,
        "timings_s": [{}] * 6,
        "wall_s": 600.0,
    }


def test_tables_and_plot(tmp_path: Path) -> None:
    text = markdown(_summary())
    assert "| label | 0.100, 0.200 | 0.150 | 0.500, 0.500 | 0.500 | 0.050 |" in text
    # 0.15 / 0.4 = 0.375 <= 1 / 1.5, but delta1 0.5 < 0.6
    assert "AbsRel label / none: 0.38 (goal <= 0.67: met); label delta1 0.500 (goal >= 0.6: missed)" in text
    assert "| native | none | 0.400 | 0.500 | 1.25 |" in text
    # f_test / f_train = 0.8: none's theory is 1 / 0.8 = 1.25 at native scale, 1 / (0.5 x 0.8) = 2.5 shrunk.
    assert "| 200 | 0.80 | 0.500 | 1.25 | 2.50 |" in text
    assert "Wall time: 10.0 min for 6 runs" in text
    plot(_summary(), tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
