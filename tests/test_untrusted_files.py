"""Untrusted checkpoints: only tensors and plain values load; a pickled callable is refused and never runs."""

import os
import pathlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from eval import run as eval_run
from eval.models import load_depth_model
from model import build_model, get_model_config, load_checkpoint, save_checkpoint
from model.metric3d_v1 import read_official_state
from model.net import UnsafeCheckpointError, load_state

pytestmark = pytest.mark.timeout(120)


class _RunsShell:
    """Unpickled by the standard unpickler, this runs `touch MARKER`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _TouchesFile:
    """Unpickled by the standard unpickler, this creates MARKER through pathlib."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@dataclass
class _Config:
    width: int = 8


def _malicious(tmp_path: Path, payload: type) -> tuple[Path, Path]:
    marker = tmp_path / f"{payload.__name__}-ran"
    path = tmp_path / f"{payload.__name__}.pt"
    tiny = build_model(get_model_config("metric3d_tiny"))
    torch.save({"model_config": {}, "model": tiny.state_dict(), "hook": payload(marker)}, path)
    return path, marker


@pytest.mark.parametrize("payload", [_RunsShell, _TouchesFile])
def test_pickled_callable_is_refused_and_never_runs(tmp_path: Path, payload: type):
    path, marker = _malicious(tmp_path, payload)
    for load in (load_checkpoint, load_depth_model, read_official_state):
        with pytest.raises(UnsafeCheckpointError, match=rf"{path}: refused to load: it asks to call or build \S+"):
            load(str(path))
    assert not marker.exists()


def test_eval_cli_refuses_a_malicious_checkpoint_in_one_line(tmp_path: Path, tiny_store: str, capsys):
    path, marker = _malicious(tmp_path, _RunsShell)
    argv = ["--model", str(path), "--store", tiny_store, "--benchmarks", "synthetic_nyu", "--out", str(tmp_path)]
    assert eval_run.main(argv) == 2 and not marker.exists()
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: refused to load") and err.strip().count("\n") == 0, err


def test_a_pickled_class_is_refused_too(tmp_path: Path):
    path = tmp_path / "config-object.pt"
    torch.save({"model_config": _Config(), "model": {}}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"_Config"):
        load_state(str(path))


def test_our_checkpoints_hold_only_tensors_and_plain_values(tmp_path: Path):
    model = build_model(get_model_config("metric3d_tiny"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    model(torch.zeros(2, 3, 64, 64)).mean().backward()
    opt.step()
    sched.step()
    # The same entries as the training checkpoint (train.loop._report).
    extra = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": 1, "train_datasets": ["a"]}
    save_checkpoint(str(tmp_path / "ok.pt"), model, extra)
    state = torch.load(tmp_path / "ok.pt", weights_only=True)
    assert state["step"] == 1 and isinstance(state["model_config"], dict)
    loaded, _ = load_checkpoint(str(tmp_path / "ok.pt"))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
