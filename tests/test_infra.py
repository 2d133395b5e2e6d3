from pathlib import Path

import pytest
import yaml

from infra.check import (
    DOCKERFILE,
    INFRA,
    check_cluster,
    check_dockerfile,
    check_file,
    check_rayjob,
    dockerfile_instructions,
)
from train.config import TrainConfig, load_config


def test_deploy_files_and_presets_check_clean():
    from infra.check import main

    assert main() == 0


def _edited(name: str, edit) -> dict:
    doc = yaml.safe_load((INFRA / name).read_text())
    edit(doc)
    return doc


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # What `ray up` rejected before: a cluster file has no top-level env.
        (lambda d: d.update(env={"MLFLOW_TRACKING_URI": "http://x"}), "('env' was unexpected)"),
        (
            lambda d: d["available_node_types"]["gpu_worker"].update(max_workers="eight"),
            "available_node_types.gpu_worker.max_workers: 'eight' is not of type 'integer'",
        ),
        (lambda d: d.update(head_node_type="nope"), "`head_node_type` must be one of `available_node_types`"),
        (lambda d: d.pop("provider"), "missing field 'provider'"),
    ],
)
def test_cluster_file_fails_where_ray_up_would(edit, message):
    problems = check_cluster(_edited("ray-cluster.yaml", edit), Path("c.yaml"))
    assert len(problems) == 1 and message in problems[0], problems


def _worker(doc: dict) -> dict:
    return doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # CRD schema: an unknown field (kubectl's strict validation), a wrong type, a bad quantity, a missing field.
        (
            lambda d: _worker(d).update(replica=1),
            "workerGroupSpecs[0]: Additional properties are not allowed ('replica'",
        ),
        (lambda d: _worker(d).update(replicas="one"), "workerGroupSpecs[0].replicas: 'one' is not of type 'integer'"),
        (
            lambda d: _worker(d)["template"]["spec"]["containers"][0]["resources"]["limits"].update(cpu="lots"),
            "workerGroupSpecs[0].template.spec.containers[0].resources.limits.cpu: 'lots' does not match",
        ),
        (lambda d: d["spec"]["rayClusterSpec"].pop("headGroupSpec"), "'headGroupSpec' is a required property"),
        (lambda d: d.update(apiVersion="ray.io/v2"), "apiVersion: 'ray.io/v2' is not ray.io/v1"),
        # KubeRay's operator rules.
        (lambda d: _worker(d).update(minReplicas=2), "workerGroupSpecs[0]: need 0 <= minReplicas <= replicas"),
        (lambda d: d["metadata"].update(name="Metric_Depth"), "metadata.name: 'Metric_Depth' must be a DNS-1035"),
        (lambda d: d["spec"].update(runtimeEnvYAML="env_vars: [1"), "spec.runtimeEnvYAML: not valid YAML"),
        # The entrypoint: a module of this project, one Train worker per GPU of the worker groups.
        (lambda d: d["spec"].update(entrypoint="python train.py"), "spec.entrypoint: must be `python -m MODULE"),
        (lambda d: d["spec"].update(entrypoint="python -m train.runx"), "module train.runx is not in this project"),
        (
            lambda d: d["spec"].update(entrypoint=d["spec"]["entrypoint"] + " --resume-if-exists x"),
            "train.run has no option --resume-if-exists",
        ),
        (
            lambda d: d["spec"].update(entrypoint=d["spec"]["entrypoint"] + " --set num_workers=4"),
            "trains on 4 GPU workers but the worker groups hold 8 GPUs",
        ),
        (
            lambda d: _worker(d).update(replicas=2, maxReplicas=2),
            "trains on 8 GPU workers but the worker groups hold 16",
        ),
    ],
)
def test_rayjob_fails_where_kubernetes_or_kuberay_would(edit, message):
    problems = check_rayjob(_edited("kuberay-rayjob.yaml", edit), Path("j.yaml"))
    assert len(problems) == 1 and message in problems[0], problems


def test_not_yaml_is_one_line(tmp_path: Path):
    (tmp_path / "x.yaml").write_text("a: [1, 2\n")
    assert "not valid YAML" in check_file(tmp_path / "x.yaml")[0]


def test_dockerfile_parses_and_builds_what_the_rayjob_runs(tmp_path: Path):
    rayjob = yaml.safe_load((INFRA / "kuberay-rayjob.yaml").read_text())
    steps = dockerfile_instructions(DOCKERFILE.read_text())
    assert steps[0][1:] == ("FROM", f"rayproject/ray:{rayjob['spec']['rayClusterSpec']['rayVersion']}-py311")
    assert ("COPY", "--chown=ray:users train train") in [s[1:] for s in steps]
    assert check_dockerfile(DOCKERFILE, rayjob) == []
    broken = tmp_path / "Dockerfile"
    for old, new, message in [
        ("ray:2.60.0-py311", "ray:2.59.0-py311", "must be rayproject/ray:2.60.0[-variant], the RayJob's rayVersion"),
        ("COPY --chown=ray:users train train", "", "entrypoint module train.run is not copied into the image"),
        ("eval eval", "evals eval", "COPY 'evals' is not in the build context"),
        ("ghcr.io/YOUR-ORG/metric-depth:0.1.0", "x", "image ghcr.io/YOUR-ORG/metric-depth:0.1.0 is not named"),
        ("WORKDIR", "WORKDIRR", "unknown instruction 'WORKDIRR'"),
    ]:
        broken.write_text(DOCKERFILE.read_text().replace(old, new))
        problems = check_dockerfile(broken, rayjob)
        assert len(problems) == 1 and message in problems[0], (old, problems)
    broken.write_text("RUN true\nFROM rayproject/ray:2.60.0\n")
    assert any("FROM must be the first instruction" in p for p in check_dockerfile(broken, rayjob))


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
