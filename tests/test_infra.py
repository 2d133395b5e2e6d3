from pathlib import Path

import pytest

from infra.check import check_file
from train.config import TrainConfig, load_config


def test_deploy_files_and_presets_check_clean():
    from infra.check import main

    assert main() == 0


def test_check_catches_a_broken_rayjob(tmp_path: Path):
    bad = tmp_path / "job.yaml"
    bad.write_text("kind: RayJob\nspec:\n  entrypoint: python train.py\n")
    problems = check_file(bad)
    assert any("train.run" in p for p in problems) and any("workerGroupSpecs" in p for p in problems)
    (tmp_path / "x.yaml").write_text("a: [1, 2\n")
    assert "not valid YAML" in check_file(tmp_path / "x.yaml")[0]


def test_presets_and_overrides():
    paper = load_config("metric3d_convnext_large")
    assert (paper.lr, paper.poly_power, paper.batch_size, paper.crop_hw, paper.steps) == (
        1e-4,
        0.9,
        192,
        (512, 960),
        500_000,
    )
    c = load_config("tiny", ["steps=7", "crop_hw=256,352", "cstm=none", "datasets=a,b", "losses=silog:1,vnl:0.5"])
    assert (c.steps, c.crop_hw, c.cstm, c.datasets, c.losses) == (
        7,
        (256, 352),
        "none",
        ("a", "b"),
        (("silog", 1.0), ("vnl", 0.5)),
    )
    assert TrainConfig.from_dict(c.to_dict()) == c


def test_bad_config_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown config fields \\['stepz'\\]"):
        load_config("tiny", ["stepz=3"])
    with pytest.raises(ValueError, match="crop_hw"):
        load_config("tiny", ["crop_hw=256"])
    with pytest.raises(FileNotFoundError, match="tiny"):
        load_config("nope")


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        ("train.run", ["--config", "tiny", "--store", "x", "--set", "stepz=3"], "unknown config fields"),
        ("train.run", ["--config", "tiny", "--store", "/nonexistent/store"], "is not a store"),
        (
            "eval.run",
            ["--model", "/nonexistent.pt", "--store", "/nonexistent/store", "--benchmarks", "nyu"],
            "is not a store",
        ),
    ],
)
def test_clis_fail_with_one_clear_line(module, args, message):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and message in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
