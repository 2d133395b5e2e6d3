"""The registered model as MLflow users meet it, in a real SQLite store (and one real `mlflow server`): the
`candidate` alias, every model URI form, a weights-only artifact stored once, a self-contained load without the
project, the pyfunc's input forms, evaluation runs linked to the model, one-line errors, no stray mlflow.db.
No Ray: tiny networks and checkpoints are built here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, free_port
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from PIL import Image

from eval import infer, measure
from eval import run as eval_run
from eval.models import load_depth_model
from model import DepthNet, build_model, get_model_config, save_checkpoint
from model.device import autocast, check_device_spec, resolve_device
from model.pyfunc import CODE_PACKAGES, REQUIRED_DISTRIBUTIONS, WEIGHTS_KEYS
from store import open_store
from train import promote, tracking

NAME = "tiny-depth"
RGB = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
K_PX = (60.0, 60.0, 39.5, 23.5)  # the centre of an 80 x 48 image: what a bare array with f_px 60 gets


def _checkpoint(path: Path, seed: int, store_uri: str, store_version: int) -> tuple[str, torch.nn.Module]:
    """A training checkpoint as train.loop writes one: weights, optimizer and scheduler state, lineage."""
    torch.manual_seed(seed)
    net = build_model(get_model_config("metric3d_tiny"))
    torch.nn.init.normal_(net.head[-1].weight, std=0.1)  # zero at initialisation: every seed would predict alike
    opt = torch.optim.AdamW(net.parameters())
    net(torch.zeros(2, 3, 64, 64)).mean().backward()
    opt.step()  # AdamW state: two moments per weight
    extra = {
        "optimizer": opt.state_dict(),
        "scheduler": {"last_epoch": 1},
        "step": 1,
        "train_datasets": ["synthetic_kitti"],
        "store_uri": store_uri,
        "store_version": store_version,
    }
    save_checkpoint(str(path), net, extra)
    return str(path), net.eval()


@dataclass
class Registry:
    root: Path
    tracking_uri: str
    run_ids: list[str]
    model_ids: list[str]
    checkpoints: list[str]
    nets: list[torch.nn.Module]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, tiny_store: str) -> Registry:
    """Two versions of NAME, each registered by its own run as train.run does (tags: the training lineage)."""
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    store_version = open_store(tiny_store).version
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.chdir(root)
        runs, checkpoints, nets = [], [], []
        for seed in (0, 1):
            path, net = _checkpoint(root / f"ckpt{seed}.pt", seed, tiny_store, store_version)
            with tracking.start_run("tests", f"train-{seed}") as run:
                tags = {"train_datasets": "synthetic_kitti", "store_uri": tiny_store, "store_version": store_version}
                mlflow.set_tags(tags)
                version, model_uri = tracking.register_model(path, NAME)
            assert (version, model_uri) == (str(seed + 1), f"models:/{NAME}@candidate")
            runs.append(run.info.run_id)
            checkpoints.append(path)
            nets.append(net)
        client = mlflow.MlflowClient()
        model_ids = [mlflow.models.get_model_info(f"models:/{NAME}/{v}").model_id for v in (1, 2)]
        assert all(client.get_logged_model(m).source_run_id == r for m, r in zip(model_ids, runs))
        yield Registry(root, uri, runs, model_ids, checkpoints, nets)


@pytest.fixture
def in_registry(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    monkeypatch.chdir(registry.root)
    return registry


def _one_line_error(err: str, start: str) -> None:
    assert err.startswith(f"error: {start}") and err.count("\n") == 1, err


@pytest.mark.timeout(300)
def test_candidate_alias_and_every_uri_form(in_registry: Registry) -> None:
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, "candidate").version) == "2"
    aliases = client.get_registered_model(NAME).aliases
    assert {a: str(v) for a, v in aliases.items()} == {"candidate": "2"}  # moved off version 1
    expected = [net.infer(RGB, K_PX)["depth_m"] for net in in_registry.nets]
    forms = {
        f"models:/{NAME}/1": 1,
        f"models:/{NAME}@candidate": 2,
        f"models:/{NAME}@latest": 2,
        f"models:/{NAME}/latest": 2,
        f"models:/{in_registry.model_ids[0]}": 1,
        f"runs:/{in_registry.run_ids[0]}/model": 1,
    }
    for uri, version in forms.items():
        loaded = load_depth_model(uri, "cpu")
        i = version - 1
        assert loaded.run_id == in_registry.run_ids[i], uri
        assert loaded.info["model_id"] == in_registry.model_ids[i]
        assert (loaded.info["registered_model"], loaded.info["version"]) == (NAME, str(version))
        assert loaded.train_datasets == frozenset({"synthetic_kitti"}) and loaded.store_version is not None
        np.testing.assert_array_equal(loaded.model.infer(RGB, K_PX)["depth_m"], expected[i])


@pytest.mark.timeout(120)
def test_registered_model_is_weights_only_and_stored_once(in_registry: Registry) -> None:
    artifacts = in_registry.root / "mlartifacts"
    # One file per version, inside its logged model; the runs hold no checkpoint of their own.
    assert not [p for p in artifacts.rglob("*.pt") if p.relative_to(artifacts).parts[0] != "models"]
    stored = [p for m in in_registry.model_ids for p in (artifacts / "models" / m).rglob("*.pt")]
    assert [p.name for p in stored] == ["weights.pt", "weights.pt"]
    for path in stored:
        state = torch.load(path, weights_only=True)
        assert set(state) == {"model_config", "model", "step", "train_datasets", "store_uri", "store_version"}
        assert set(state) <= set(WEIGHTS_KEYS)
    full = Path(in_registry.checkpoints[0]).stat().st_size
    assert stored[0].stat().st_size < full / 2  # AdamW's two moments per weight are gone


def _closure(requirements: list[str]) -> set[str]:
    """Every distribution pip installs for `requirements` (here: what is installed of it), canonical names."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            deps = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            continue
        for dep in map(Requirement, deps):
            extras = req.extras or {""}
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in extras):
                todo.append(dep)
    return seen


# Runs in a fresh interpreter, outside the repository: the project's folder is taken off sys.path (the editable
# install puts it there), so `model`, `pipelines`, `schemas` can only come from the logged model's code. What the
# model imports is told apart from MLflow's own (optional) imports by fetching it from the registry first.
CLEAN_LOAD = """
import json, sys
sys.path = [p for p in sys.path if p not in (sys.argv[1], "")]
import importlib.metadata as md
import numpy as np
import mlflow.pyfunc
local = mlflow.artifacts.download_artifacts(sys.argv[2])
before = set(sys.modules)
pyfunc = mlflow.pyfunc.load_model(local, model_config={"device": "cpu"})
image = np.zeros((1, 32, 48, 3), np.uint8)
depth = pyfunc.predict({"image": image, "intrinsics": np.array([[40.0, 40.0, 23.5, 15.5]], np.float32)})
dists = md.packages_distributions()
new = {m.split(".")[0] for m in set(sys.modules) - before}
print(json.dumps({
    "shape": list(depth.shape),
    "project": {p: sys.modules[p].__file__ for p in sys.argv[3].split(",") if p in sys.modules},
    "imported": sorted({d for m in new if m not in sys.argv[3].split(",") for d in dists.get(m, [])}),
}))
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_self_contained_load_in_a_clean_process(in_registry: Registry, tmp_path: Path) -> None:
    local = mlflow.artifacts.download_artifacts(f"models:/{NAME}@candidate", dst_path=str(tmp_path / "model"))
    requirements = (Path(local) / "requirements.txt").read_text().split()
    assert not any(canonicalize_name(Requirement(r).name) == "metricdepth" for r in requirements)
    ours = [r for r in requirements if canonicalize_name(Requirement(r).name) != "mlflow"]
    assert [Requirement(r).name for r in ours] == list(REQUIRED_DISTRIBUTIONS)
    assert all({s.operator for s in Requirement(r).specifier} == {">=", "<"} for r in ours)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"MLFLOW_TRACKING_URI": in_registry.tracking_uri}
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    args = [sys.executable, "-c", CLEAN_LOAD, str(REPO), f"models:/{NAME}@candidate", ",".join(CODE_PACKAGES)]
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["shape"] == [1, 32, 48]
    assert set(out["project"]) == set(CODE_PACKAGES)
    assert all(not f.startswith(str(REPO)) and "/code/" in f for f in out["project"].values()), out["project"]
    # Every distribution the loaded model imported is installed by its requirements (or comes with mlflow).
    missing = {canonicalize_name(d) for d in out["imported"]} - _closure(requirements)
    assert not missing, f"imported but not required: {sorted(missing)}"


@pytest.mark.timeout(300)
def test_pyfunc_input_forms(in_registry: Registry, tmp_path: Path) -> None:
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}/1", model_config={"device": "cpu"})
    expected = in_registry.nets[0].infer(RGB, K_PX)["depth_m"]
    forms = {
        "dict, float64 intrinsics": {"image": RGB[None], "intrinsics": np.array([K_PX])},
        "dict, float32 intrinsics": {"image": RGB[None], "intrinsics": np.array([K_PX], np.float32)},
        "dict, one image, 4 numbers": {"image": RGB, "intrinsics": np.array(K_PX, np.float32)},
        "dict, int64 image (JSON)": {"image": RGB.astype(np.int64)[None], "intrinsics": np.array([K_PX])},
        "DataFrame, intrinsics column": pd.DataFrame({"image": [RGB], "intrinsics": [list(K_PX)]}),
        "DataFrame, fx fy cx cy, nested lists": pd.DataFrame(
            {"image": [RGB.tolist()], **{c: [v] for c, v in zip(("fx", "fy", "cx", "cy"), K_PX)}}
        ),
    }
    for name, model_input in forms.items():
        depth = pyfunc.predict(model_input)
        assert depth.shape == (1, 48, 80) and depth.dtype == np.float32, name
        np.testing.assert_array_equal(depth[0], expected, err_msg=name)
    np.testing.assert_array_equal(pyfunc.predict(RGB[None], params={"f_px": K_PX[0]})[0], expected)
    batch = pyfunc.predict({"image": np.stack([RGB, RGB]), "intrinsics": np.array([K_PX, K_PX])})
    assert batch.shape == (2, 48, 80)
    # The REST path of `mlflow models serve`: JSON parsed by MLflow's scoring server, then predict.
    split = {"dataframe_split": {"columns": ["image", "intrinsics"], "data": [[RGB.tolist(), list(K_PX)]]}}
    request, answer = tmp_path / "request.json", tmp_path / "predictions.json"
    request.write_text(json.dumps(split))
    mlflow.models.predict(f"models:/{NAME}/1", input_path=str(request), output_path=str(answer), env_manager="local")
    np.testing.assert_array_equal(np.asarray(json.loads(answer.read_text())["predictions"], np.float32)[0], expected)
    refusals = {
        "no intrinsics": RGB,
        "image must be uint8": {"image": RGB.astype(np.float32), "intrinsics": np.array(K_PX)},
        "needs an `image` column": pd.DataFrame({"rgb": [RGB]}),
        "fx, fy > 0": {"image": RGB, "intrinsics": np.array([0.0, 60.0, 39.5, 23.5])},
    }
    for message, model_input in refusals.items():
        with pytest.raises(ValueError, match=message):
            pyfunc.predict(model_input)
    bf16 = mlflow.pyfunc.load_model(f"models:/{NAME}/1", model_config={"device": "cpu", "autocast": "bf16"})
    np.testing.assert_allclose(bf16.predict({"image": RGB, "intrinsics": np.array(K_PX)})[0], expected, rtol=0.1)


@pytest.mark.timeout(300)
def test_evaluation_logs_params_links_metrics_and_infers_once(
    in_registry: Registry, tiny_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    infer_once = DepthNet.infer

    def counted(self: DepthNet, *args: object, **kwargs: object) -> dict:
        calls.append(1)
        return infer_once(self, *args, **kwargs)

    monkeypatch.setattr(DepthNet, "infer", counted)
    uri = f"models:/{NAME}@candidate"
    results = eval_run.evaluate([uri], tiny_store, ["synthetic_kitti:val"], tmp_path / "rep", ["oracle"], limit=2)
    assert len(calls) == 2  # two images, once each: the oracle is the model's predictions, median-aligned
    by = {(r["model"], r["mode"]): r["metrics"] for r in results}
    assert by[(f"{uri} + oracle scale", "metric")] == by[(uri, "median")]

    client = mlflow.MlflowClient()
    train_run = client.get_run(in_registry.run_ids[1])
    (child,) = client.search_runs(
        [train_run.info.experiment_id], f"tags.mlflow.parentRunId = '{in_registry.run_ids[1]}'"
    )
    store = open_store(tiny_store)
    params = child.data.params
    assert params["store_uri"] == store.url and params["store_version"] == str(store.version)
    assert params["benchmarks"] == "synthetic_kitti:val" and params["protocols"].startswith("synthetic_kitti=")
    assert (params["device"], params["autocast"], params["baselines"], params["model_uri"]) == (
        "auto",
        "off",
        "oracle",
        uri,
    )
    assert [d.dataset.name for d in child.inputs.dataset_inputs] == [f"synthetic_kitti:val@v{store.version}"]
    linked = {m.key: m for m in client.get_logged_model(in_registry.model_ids[1]).metrics}
    assert linked["synthetic_kitti.metric.abs_rel"].value == by[(uri, "metric")]["abs_rel"]
    assert linked["synthetic_kitti.metric.abs_rel"].dataset_name == f"synthetic_kitti:val@v{store.version}"


def _photo(path: Path) -> str:
    Image.fromarray(RGB).save(path)
    return str(path)


@pytest.mark.timeout(180)
def test_missing_store_is_one_line_and_no_database_is_created(
    tiny_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    photo = _photo(tmp_path / "p.png")
    looked_for = f"no MLflow store at {tmp_path / 'mlflow.db'} (from the default, ./mlflow.db)"
    for main in (
        lambda: infer.main([photo, "--model", f"models:/{NAME}@candidate", "--out", "o", "--f-px", "60"]),
        lambda: measure.main([photo, "--model", f"models:/{NAME}/1", "--from", "1,1", "--to", "5,5", "--f-px", "60"]),
    ):
        with pytest.raises(SystemExit) as exit_:
            main()
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        _one_line_error(err, looked_for)
        assert "MLFLOW_TRACKING_URI" in err
    args = ["--model", "runs:/0123/model", "--store", tiny_store, "--benchmarks", "synthetic_kitti", "--out", "r"]
    assert eval_run.main(args) == 2
    _one_line_error(capsys.readouterr().err, looked_for)
    assert promote.main([NAME, "1"]) == 2
    _one_line_error(capsys.readouterr().err, looked_for)
    elsewhere = tmp_path / "nowhere" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{elsewhere}")
    assert eval_run.main(args) == 2
    _one_line_error(capsys.readouterr().err, f"no MLflow store at {elsewhere} (from MLFLOW_TRACKING_URI)")
    assert not list(tmp_path.rglob("*.db")) and not (tmp_path / "nowhere").exists()
    down = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", down)
    assert eval_run.main(args) == 2  # in seconds: MLflow's client would retry for minutes
    _one_line_error(capsys.readouterr().err, f"no MLflow server answers at {down} (")


@pytest.mark.timeout(180)
def test_mlflow_errors_are_one_line_and_promote_sets_champion(
    in_registry: Registry, capsys: pytest.CaptureFixture
) -> None:
    photo = _photo(in_registry.root / "p.png")
    for uri, reason in (
        ("models:/nope@candidate", "nope"),
        (f"models:/{NAME}/9", "9"),
        (f"models:/{NAME}@nosuch", "nosuch"),
    ):
        with pytest.raises(SystemExit) as exit_:
            infer.main([photo, "--model", uri, "--out", "o", "--f-px", "60"])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        _one_line_error(err, f"--model {uri}: ")
        assert (
            reason in err.removeprefix(f"error: --model {uri}: ") and f"(MLflow at {in_registry.tracking_uri})" in err
        )
    assert promote.main([NAME, "9"]) == 2
    _one_line_error(capsys.readouterr().err, f"setting alias champion of {NAME} to version 9: ")
    assert promote.main([NAME, "1"]) == 0
    assert capsys.readouterr().out == f"models:/{NAME}@champion -> version 1\n"
    assert str(mlflow.MlflowClient().get_model_version_by_alias(NAME, "champion").version) == "1"
    with pytest.raises(tracking.TrackingError, match=r"^registering model bad/name: ") as error:
        with tracking.start_run("tests", "bad-name"):
            tracking.register_model(in_registry.checkpoints[0], "bad/name")
    assert "\n" not in str(error.value)


@pytest.mark.timeout(120)
def test_device_selection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^device cuda: CUDA is not available here"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda") and resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"device cuda:2: only 2 CUDA device\(s\) here"):
        resolve_device("cuda:2")
    with pytest.raises(ValueError, match=r"unknown device 'gpu'; valid: auto \(CUDA when available, else CPU\)"):
        check_device_spec("gpu")
    with autocast(torch.device("cpu"), "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with autocast(torch.device("cpu"), "off"):
        assert not torch.is_autocast_enabled("cpu")
    # The CLIs: a malformed spec is a usage error; a CUDA device that is not there, one line before any loading.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    photo = _photo(tmp_path / "p.png")
    ckpt, _ = _checkpoint(tmp_path / "c.pt", 0, "unused", 0)
    with pytest.raises(SystemExit):
        infer.main([photo, "--model", ckpt, "--out", str(tmp_path / "o"), "--device", "gpu"])
    assert "unknown device 'gpu'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        infer.main([photo, "--model", ckpt, "--out", str(tmp_path / "o"), "--device", "cuda", "--f-px", "60"])
    assert exit_.value.code == 2
    _one_line_error(capsys.readouterr().err, "device cuda: CUDA is not available here")
    assert infer.main([photo, "--model", ckpt, "--out", str(tmp_path / "o"), "--f-px", "60"]) == 0
    meta = json.loads((tmp_path / "o" / "meta.json").read_text())
    assert (meta["device"], meta["autocast"]) == ("cpu", "off")


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_registration_and_resolution_over_a_tracking_server(
    mlflow_server: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt, net = _checkpoint(tmp_path / "c.pt", 0, "unused", 0)
    with tracking.start_run("server", "train") as run:
        mlflow.set_tag("train_datasets", "synthetic_kitti")
        version, uri = tracking.register_model(ckpt, "served")
    assert (version, uri) == ("1", "models:/served@candidate")
    expected = net.infer(RGB, K_PX)["depth_m"]
    for form in (uri, "models:/served/1", "models:/served@latest", f"runs:/{run.info.run_id}/model"):
        loaded = load_depth_model(form, "cpu")
        assert (loaded.run_id, loaded.info["version"], loaded.train_datasets) == (
            run.info.run_id,
            "1",
            frozenset({"synthetic_kitti"}),
        )
        np.testing.assert_array_equal(loaded.model.infer(RGB, K_PX)["depth_m"], expected)
    served = mlflow.pyfunc.load_model(uri).predict({"image": RGB, "intrinsics": np.array(K_PX, np.float32)})
    np.testing.assert_array_equal(served[0], expected)
    photo = _photo(tmp_path / "p.png")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        infer.main([photo, "--model", "models:/nope@candidate", "--out", "o", "--f-px", "60"])
    _one_line_error(capsys.readouterr().err, "--model models:/nope@candidate: ")
    assert not (tmp_path / "mlflow.db").exists()  # the server's own database is server.db
