"""Metric3D v1 (model.metric3d_v1): parity with the official network, strict key mapping, import and scoring.

The parity fixture was made once by running the official code (YvanYin/Metric3D, mono/model, convtiny config) on
weights drawn by `draw_official_weights` below from the recorded key names, shapes and seed; only its input and
outputs are stored, so this test rebuilds the official checkpoint bit for bit.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.models import load_depth_model
from model.import_metric3d import main as import_main
from model.metric3d_v1 import build_metric3d_v1, load_official, read_official_state, variant_of

FIXTURE = Path(__file__).parent / "fixtures" / "metric3d_v1_convtiny_parity.npz"
TINY = "metric3d_v1_convtiny"
TOLERANCE = 1e-4  # float32: depth (canonical metres, plus the same relative), confidence (logit)
F64_TOLERANCE = 1e-8  # float64: max abs difference, depth and confidence


def draw_official_weights(keys: list[tuple[str, tuple[int, ...]]], seed: int) -> dict[str, torch.Tensor]:
    """Deterministic weights for official state_dict keys: one generator, drawn in key order, scaled per kind.

    Conv / linear weights get He scaling, std sqrt(2 / fan-in) with fan-in the product of all dims but the first:
    activations stay O(1) through the rectified layers and the depth bins' softmax is far from uniform (smaller
    weights leave every pixel near the bins' mean depth, hiding wiring errors). Norm and layer scales sit near 1,
    running variances are positive, biases and running means small."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in keys:
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            out[name] = torch.zeros((), dtype=torch.long)  # a counter, unused in eval mode: nothing drawn
            continue
        z = torch.randn(shape, generator=gen)
        if leaf == "running_var":
            out[name] = 1.0 + 0.1 * z.abs()
        elif len(shape) == 1 and leaf in ("weight", "gamma"):
            out[name] = 1.0 + 0.1 * z
        elif len(shape) > 1:
            out[name] = z * math.sqrt(2.0 / math.prod(shape[1:]))
        else:
            out[name] = 0.02 * z
    return out


@pytest.fixture(scope="module")
def parity() -> dict:
    with np.load(FIXTURE, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    data["keys"] = [(name, tuple(shape)) for name, shape in json.loads(str(data["keys_json"]))]
    data["state"] = draw_official_weights(data["keys"], int(data["seed"]))
    return data


def _write_official(path: Path, state: dict[str, torch.Tensor]) -> str:
    torch.save({"model_state_dict": state}, path)
    return str(path)


@pytest.mark.timeout(120)
def test_parity_with_official_convtiny(parity, tmp_path):
    model = load_official(_write_official(tmp_path / "official.pth", parity["state"]), TINY)
    x = torch.from_numpy(parity["input"])
    with torch.no_grad():
        depth, confidence = (t.numpy() for t in model(x))
        depth64, confidence64 = (t.numpy() for t in model.double()(x.double()))
    assert depth.shape == confidence.shape == (1, 1, *x.shape[-2:]) == parity["depth"].shape
    # A meaningful fixture: depth spreads over tens of metres, the confidence over several logits.
    assert parity["depth"].std() > 5.0 and np.ptp(parity["confidence"]) > 5.0
    # float64: the same function as the official network, to rounding.
    assert np.abs(depth64 - parity["depth_f64"]).max() <= F64_TOLERANCE
    assert np.abs(confidence64 - parity["confidence_f64"]).max() <= F64_TOLERANCE
    # float32, as it runs: the two codes round differently (LayerNorm formulas) and the bins' softmax amplifies it
    # (the official float32 output itself is 3e-4 m off its float64 one), hence a relative term for depth.
    np.testing.assert_allclose(depth, parity["depth"], rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_allclose(confidence, parity["confidence"], rtol=0, atol=TOLERANCE)


@pytest.mark.timeout(120)
def test_every_official_key_accounted_for(parity, tmp_path):
    state = dict(parity["state"])
    state["depth_model.decoder.extra_head.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"1 official keys left over .*depth_model\.decoder\.extra_head\.weight"):
        load_official(_write_official(tmp_path / "extra.pth", state), TINY)
    state = dict(parity["state"])
    del state["depth_model.decoder.conv_up_2.7.bias"]
    with pytest.raises(ValueError, match=r"1 of our keys missing from the checkpoint: decoder\.refine\.7\.bias"):
        load_official(_write_official(tmp_path / "missing.pth", state), TINY)
    state = dict(parity["state"])
    with pytest.raises(ValueError, match=r"shape mismatches: .*conv_dw"):
        state["depth_model.encoder.stages.0.0.dwconv.weight"] = torch.zeros(96, 1, 3, 3)
        load_official(_write_official(tmp_path / "shape.pth", state), TINY)


def test_pickled_callable_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {}, "hook": os.getcwd}, path)
    with pytest.raises(pickle.UnpicklingError):
        read_official_state(str(path))


def test_variant_told_from_checkpoint(parity):
    assert variant_of(parity["state"]) == TINY


@pytest.mark.timeout(180)
def test_convlarge_builds_and_runs():
    t0 = time.perf_counter()
    model = build_metric3d_v1("metric3d_v1_convlarge").eval()
    encoder = sum(p.numel() for p in model.encoder.parameters())
    assert 195e6 < encoder < 197e6  # ConvNeXt-Large without its classifier head
    assert model.encoder.feature_info.channels() == [192, 384, 768, 1536]
    if time.perf_counter() - t0 > 20:
        pytest.skip("convlarge built and counted; forward skipped on this slow machine")
    with torch.no_grad():
        depth, confidence = model(torch.zeros(1, 3, 64, 96))
    assert depth.shape == confidence.shape == (1, 1, 64, 96)


def _photo() -> tuple[np.ndarray, tuple[float, float, float, float]]:
    rgb = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    return rgb, (60.0, 60.0, 39.5, 23.5)


@pytest.mark.timeout(300)
def test_import_registers_and_scores_like_ours(parity, tmp_path, monkeypatch, capsys):
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)  # the SQLite store keeps its artifacts in ./mlartifacts
    ckpt = _write_official(tmp_path / "convtiny.pth", parity["state"])
    args = [ckpt, "--name", TINY, "--registered-model", "m3d-tiny", "--input-hw", "64,96"]
    assert import_main(args) == 0
    assert "models:/m3d-tiny@candidate (version 1" in capsys.readouterr().out

    loaded = load_depth_model("models:/m3d-tiny@candidate")
    assert loaded.train_datasets is None  # unknown lineage unless told
    assert loaded.info["model_config"]["name"] == TINY
    rgb, k = _photo()
    depth_m = loaded.model.infer(rgb, k)["depth_m"]
    assert depth_m.shape == rgb.shape[:2] and depth_m.dtype == np.float32 and np.isfinite(depth_m).all()
    np.testing.assert_array_equal(depth_m, load_official(ckpt, TINY, (64, 96)).infer(rgb, k)["depth_m"])
    # Label mode: the network sees the same pixels whatever the focal, so metres scale with it (depth_c * f / 1000).
    doubled = loaded.model.infer(rgb, (2 * k[0], 2 * k[1], k[2], k[3]))["depth_m"]
    np.testing.assert_allclose(doubled, 2 * depth_m, rtol=1e-6)
    # The registered pyfunc flavour serves the same numbers.
    served = mlflow.pyfunc.load_model("models:/m3d-tiny@latest").predict(
        {"image": rgb[None], "intrinsics": np.array([k])}
    )
    np.testing.assert_array_equal(served[0], depth_m)

    assert import_main([*args, "--train-datasets", "nyu,kitti"]) == 0
    assert load_depth_model("models:/m3d-tiny/2").train_datasets == frozenset({"nyu", "kitti"})


@pytest.mark.timeout(300)
def test_official_file_scored_directly(parity, tmp_path):
    ckpt = _write_official(tmp_path / "convtiny.pth", parity["state"])
    loaded = load_depth_model(f"metric3d_v1:{ckpt}")
    assert loaded.train_datasets is None and loaded.info["model_config"]["input_hw"] == (544, 1216)
    rgb, k = _photo()
    depth_m = loaded.model.infer(rgb, k)["depth_m"]
    assert depth_m.shape == rgb.shape[:2] and np.isfinite(depth_m).all()
    with pytest.raises(FileNotFoundError, match="no such official"):
        load_depth_model(f"metric3d_v1:{tmp_path / 'absent.pth'}")


def test_cli_help_and_refusals(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        import_main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert all(
        s in text for s in ("weights_only", "metric3d_v1:CKPT.pth", "--train-datasets", "models:/NAME@candidate")
    )
    evil = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {}, "hook": os.getcwd}, evil)
    assert import_main([str(evil), "--name", TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {evil}: refused to load") and "posix.getcwd" in err and err.count("\n") == 1
