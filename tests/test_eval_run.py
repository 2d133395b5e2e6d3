"""The evaluation harness end to end on a tiny store: two models, baselines, lineage, report files."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from eval.infer import main as infer_main
from eval.run import evaluate
from model import build_model, get_model_config, save_checkpoint


def _checkpoint(path: Path, seed: int, seen: list[str]) -> str:
    torch.manual_seed(seed)
    model = build_model(get_model_config("metric3d_tiny"))
    save_checkpoint(str(path), model, {"train_datasets": seen})
    return str(path)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return _checkpoint(root / "a.pt", 0, ["synthetic_kitti"]), _checkpoint(root / "b.pt", 1, ["synthetic_kitti"])


def test_report_with_two_models_and_baselines(tiny_store, two_models, tmp_path):
    out = tmp_path / "report"
    results = evaluate(
        list(two_models), tiny_store, ["synthetic_kitti:val", "synthetic_nyu"], out, ["constant", "oracle"], limit=3
    )
    doc = json.loads((out / "report.json").read_text())
    assert doc["results"] == json.loads(json.dumps(results, default=float))
    # 2 models + constant + 2 oracle-scaled, x 2 benchmarks, x 3 modes.
    assert len(results) == 5 * 2 * 3
    keys = {"abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "delta1", "delta2", "delta3"}
    for r in results:
        assert set(r) >= {"model", "benchmark", "mode", "zero_shot", "n_samples", "metrics"}
        assert r["mode"] in ("metric", "median", "lsq")
        if r["n_samples"]:
            assert set(r["metrics"]) == keys
    # Lineage: the checkpoints saw synthetic_kitti only.
    zero = {(r["model"], r["benchmark"]): r["zero_shot"] for r in results}
    assert zero[(two_models[0], "synthetic_kitti")] is False and zero[(two_models[0], "synthetic_nyu")] is True
    assert doc["provenance"]["benchmarks"]["synthetic_kitti"]["split"] == "val"
    assert doc["provenance"]["benchmarks"]["synthetic_nyu"]["protocol"] == "default_synthetic"
    # The oracle's metric numbers are the model's median-aligned ones.
    by = {(r["model"], r["benchmark"], r["mode"]): r["metrics"] for r in results}
    assert (
        by[(f"{two_models[0]} + oracle scale", "synthetic_kitti", "metric")]
        == by[(two_models[0], "synthetic_kitti", "median")]
    )
    # The constant baseline: lsq of a constant is undefined and reported as missing, not as a number.
    const = [r for r in results if r["model"].startswith("constant")]
    assert all(r["n_samples"] == 0 for r in const if r["mode"] == "lsq")
    assert all(r["n_samples"] == 3 for r in const if r["mode"] == "metric")
    md = (out / "report.md").read_text()
    assert "zero-shot" in md and "in-domain" in md
    # Figures are files beside the report: per benchmark samples, error against depth, scale ratios; timings.
    html = (out / "report.html").read_text()
    figures = [f["file"] for f in doc["figures"]]
    assert len(figures) == 3 * 2 + 1 and all(f'<img src="{f}"' in html and (out / f).is_file() for f in figures)


def test_unknown_benchmark_lists_the_datasets(tiny_store, two_models, tmp_path):
    with pytest.raises(KeyError, match="synthetic_kitti"):
        evaluate([two_models[0]], tiny_store, ["kitti"], tmp_path, [])


def test_photo_to_depth_with_the_real_model(two_models, tmp_path):
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(photo)
    assert infer_main([str(photo), "--model", two_models[0], "--out", str(tmp_path / "out"), "--f-px", "100"]) == 0
    depth = np.load(tmp_path / "out" / "depth.npy")
    assert depth.shape == (90, 120) and depth.dtype == np.float32 and (depth > 0).all()
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["f_px"] == 100.0
    assert (tmp_path / "out" / "cloud.ply").stat().st_size > 90 * 120 * 15


def test_scale_native_is_applied_recorded_and_refused_where_unsupported(tiny_store, two_models, tmp_path):
    from eval.models import ConstantDepth, Loaded
    from eval.run import _at_scale, main

    bench = ["synthetic_kitti:val"]
    fit = evaluate([two_models[0]], tiny_store, bench, tmp_path / "fit", [], limit=2)
    native = evaluate([two_models[0]], tiny_store, bench, tmp_path / "native", [], limit=2, scale="native")
    # The 96 x 64 images are enlarged x 1.67 to fit 128 x 160 by default; native runs them as they are.
    assert fit[0]["metrics"]["abs_rel"] != native[0]["metrics"]["abs_rel"]
    assert "the photo's own pixels" in (tmp_path / "native" / "report.json").read_text()
    with pytest.raises(KeyError, match="unknown scale 'half'; valid: fit, native"):
        evaluate([two_models[0]], tiny_store, bench, tmp_path / "x", [], scale="half")
    with pytest.raises(ValueError, match="c: --scale native is not supported"):
        _at_scale(Loaded("c", ConstantDepth(1.0), None), "native")
    with pytest.raises(SystemExit):
        main(["--model", two_models[0], "--store", tiny_store, "--benchmarks", bench[0], "--scale", "half"])
