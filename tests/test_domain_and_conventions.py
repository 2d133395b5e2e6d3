"""Zero-shot that means zero-shot (shared sources, overlapping scenes, with the reason in the report) and the
evaluation conventions (metric predictions clipped to the protocol's range; images left out are counted), on a
small store of NYU-layout and SUN RGB-D frames written here with known depth."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from eval.domain import domain_of, shared_sources
from eval.harness import resolve_benchmark, score
from eval.metrics import abs_rel, align
from eval.models import Loaded
from eval.run import evaluate
from ingest.engine import ingest
from model import build_model, get_model_config, save_checkpoint
from store import open_store

pytestmark = pytest.mark.timeout(120)
H, W = 480, 640  # NYU's frame size: the Eigen crop is defined in its pixels
# Frames of the nyu test split by colour level (what the fake model below tells them by) and depth in metres:
# 12 m lies beyond the NYU protocol's 10 m cap, so that frame has no scored pixel.
NYU_TEST = {"00001": (40, 2.0), "00002": (120, 12.0), "00003": (200, 2.0)}


def _put(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def _nyu_frame(folder: Path, index: str, level: int, depth_m: float) -> None:
    """A BTS-layout NYU frame: a flat grey image and uniform depth (uint16 mm)."""
    _put(folder / f"rgb_{index}.jpg", np.full((H, W, 3), level, np.uint8))
    _put(folder / f"sync_depth_{index}.png", np.full((H, W), round(depth_m * 1000), np.uint16))


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """nyu (test: scene 'bathroom', three frames), sunrgbd (train: one kv1/NYUdata frame) and nyu_copy (train:
    the nyu test scene laid out again in the training tree, as a careless copy would)."""
    root = tmp_path_factory.mktemp("domain")
    for index, (level, depth_m) in NYU_TEST.items():
        _nyu_frame(root / "nyu/official_splits/test/bathroom", index, level, depth_m)
    _nyu_frame(root / "nyu_copy/sync/bathroom", "00001", 40, 2.0)
    frame = root / "sunrgbd/kv1/NYUdata/NYU0001"
    mm = np.full((H, W), 2000, np.uint16)
    _put(frame / "image/NYU0001.jpg", np.full((H, W, 3), 90, np.uint8))
    _put(frame / "depth/NYU0001.png", (mm << 3) | (mm >> 13))  # SUN RGB-D stores mm rotated left by 3 bits
    (frame / "intrinsics.txt").write_text("518.86 0 325.58\n0 519.47 253.74\n0 0 1\n")
    url = str(root / "store")
    for adapter, src, split, name in (
        ("nyu", "nyu", "test", None),
        ("sunrgbd", "sunrgbd", "train", None),
        ("nyu", "nyu_copy", "train", "nyu_copy"),
    ):
        summary = ingest(adapter, str(root / src), url, split=split, name=name, workers=0, progress=False)
        assert summary.quarantined == 0
    return url


class FakeByLevel:
    """The infer shape, with a known prediction per nyu test frame (told by its grey level): 25 m everywhere for
    frame 00001 (clipped to the 10 m cap), 5 m for 00002 (nothing scored there anyway) and 2 m with one NaN
    pixel inside the crop for 00003."""

    def infer(self, rgb: np.ndarray, k_px: tuple[float, float, float, float]) -> dict[str, np.ndarray]:
        level = float(rgb.mean())
        depth = np.full(rgb.shape[:2], 25.0 if level < 80 else 5.0 if level < 160 else 2.0, np.float32)
        if level >= 160:
            depth[240, 320] = np.nan
        return {"depth_m": depth}


def test_shares_are_read_both_ways() -> None:
    assert shared_sources("sunrgbd", "nyu") == shared_sources("nyu", "sunrgbd") == ["NYUv2 frames"]
    assert shared_sources("nyu_raw", "nyu") == ["NYUv2 scenes"] and shared_sources("kitti_object", "kitti")
    assert shared_sources("diode", "nyu") == []


def test_trained_on_sunrgbd_is_in_domain_on_nyu_with_its_reason(store_url: str, tmp_path: Path) -> None:
    store = open_store(store_url)
    bench = resolve_benchmark(store, "nyu")
    model = Loaded("m", FakeByLevel(), frozenset({"sunrgbd"}), store_uri=store_url, store_version=store.version)
    assert domain_of(model, "nyu", bench.rows, store).reason == "in-domain: shares NYUv2 frames with sunrgbd"
    # The same verdict end to end, for a checkpoint carrying its lineage as train.loop writes it.
    torch.manual_seed(0)
    ckpt = str(tmp_path / "sunrgbd.pt")
    lineage = {"train_datasets": ["sunrgbd"], "store_uri": store_url, "store_version": store.version}
    save_checkpoint(ckpt, build_model(get_model_config("metric3d_tiny")), lineage)
    results = evaluate([ckpt], store_url, ["nyu"], tmp_path / "report", [], keep=0)
    assert {(r["zero_shot"], r["domain_reason"]) for r in results} == {
        (False, "in-domain: shares NYUv2 frames with sunrgbd")
    }
    doc = json.loads((tmp_path / "report" / "report.json").read_text())
    assert all(r["domain_reason"] == "in-domain: shares NYUv2 frames with sunrgbd" for r in doc["results"])
    assert "| in-domain: shares NYUv2 frames with sunrgbd |" in (tmp_path / "report" / "report.md").read_text()


def test_scene_overlap_and_plain_verdicts(store_url: str) -> None:
    store = open_store(store_url)
    rows = resolve_benchmark(store, "nyu").rows
    copy = Loaded("copy", FakeByLevel(), frozenset({"nyu_copy"}))  # no catalog recorded: the scored store's rows
    verdict = domain_of(copy, "nyu", rows, store)
    assert (verdict.zero_shot, verdict.reason) == (
        False,
        "in-domain: 1 of its 1 scenes overlap with nyu_copy (bathroom)",
    )
    assert domain_of(Loaded("own", FakeByLevel(), frozenset({"nyu"})), "nyu", rows, store).reason == (
        "in-domain: trained on nyu"
    )
    # Shared sources are declared per adapter, so a renamed copy of NYU (adapter nyu) is in-domain for sunrgbd too.
    copy_rows = resolve_benchmark(store, "nyu_copy").rows
    renamed = domain_of(Loaded("s", FakeByLevel(), frozenset({"sunrgbd"})), "nyu_copy", copy_rows, store)
    assert renamed.reason == "in-domain: shares NYUv2 frames with sunrgbd"
    unknown = domain_of(Loaded("official", FakeByLevel(), None), "nyu", rows, store)
    assert (unknown.zero_shot, unknown.reason) == (None, "unknown lineage: the model records no training datasets")
    zero = domain_of(Loaded("z", FakeByLevel(), frozenset({"diode"})), "nyu", rows, store)
    assert zero.zero_shot is True
    assert zero.reason == (
        f"zero-shot: trained on diode; no shared source, scene or frame (3 rows against 0 training rows of "
        f"{store_url}@v{store.version}, the scored store: the training catalog is not recorded)"
    )


def test_metric_mode_clips_to_the_protocol_range() -> None:
    pred = np.array([20.0, 1e-4, 3.0])
    gt = np.array([5.0, 5.0, 4.0])
    mask = np.array([True, True, False])
    clipped = align(pred, gt, mask, "metric", clip_m=(1e-3, 10.0))
    np.testing.assert_array_equal(clipped.depth_m, [10.0, 1e-3, 3.0])
    # (|10 - 5| / 5 + |0.001 - 5| / 5) / 2 = (1 + 0.9998) / 2
    assert abs_rel(clipped.depth_m, gt, mask) == pytest.approx(0.9999, rel=1e-12)
    assert abs_rel(align(pred, gt, mask, "metric").depth_m, gt, mask) == pytest.approx((3 + 0.99998) / 2)
    assert align(pred, gt, mask, "median", clip_m=(1e-3, 10.0)).scale == pytest.approx(5 / 10.00005)  # unclipped


def test_images_left_out_are_counted_and_reported(store_url: str, tmp_path: Path) -> None:
    store = open_store(store_url)
    bench = resolve_benchmark(store, "nyu")
    scores, _ = score(Loaded("fake", FakeByLevel(), frozenset({"sunrgbd"})), store, bench)
    metric = next(r for r in scores.results() if r["mode"] == "metric")
    assert (metric["n_samples"], metric["n_images"]) == (1, 3)
    assert metric["excluded"] == {"no_scored_pixels": 1, "invalid_prediction": 1, "alignment_undefined": 0}
    # Frame 00001 alone: 25 m clipped to the 10 m cap against 2 m everywhere in the crop.
    assert metric["metrics"]["abs_rel"] == pytest.approx(4.0) and metric["metrics"]["rmse"] == pytest.approx(8.0)
    assert metric["metric_clip_m"] == [1e-3, 10.0]
    details = sorted((e["reason"], e["detail"]) for e in scores.excluded)
    n_crop = (471 - 45) * (601 - 41)  # the Eigen crop's pixels
    assert details == [
        ("invalid_prediction", f"of {n_crop} scored pixels: 1 NaN, 0 infinite, 0 <= 0"),
        ("no_scored_pixels", "0 pixels"),
    ]
    # In the report files: counts per reason in report.json, the images and reasons in report.md.
    from eval import report

    report.write(tmp_path, scores.results(), [scores], {}, {})
    doc = json.loads((tmp_path / "report.json").read_text())
    assert sorted(e["reason"] for e in doc["excluded_images"]) == ["invalid_prediction", "no_scored_pixels"]
    assert doc["results"][0]["excluded"]["no_scored_pixels"] == 1
    md = (tmp_path / "report.md").read_text()
    assert "| fake | nyu | no_scored_pixels | 1 of 3 |" in md and "| fake | nyu | invalid_prediction | 1 of 3 |" in md
    assert "| 1 / 3 | 1 no_scored_pixels, 1 invalid_prediction |" in md
    assert "the prediction clipped to the protocol's depth range" in md
