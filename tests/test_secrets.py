"""Secrets stay where they are: nothing secret enters a job's runtime env; a missing bucket is never made unasked."""

import pytest
import s3fs

from ingest import run as ingest_run
from ingest.synthetic import Camera, generate
from store import StoreError, open_store
from train.config import load_config
from train.run import FORWARDED_ENV, _forwarded_env, train

pytestmark = pytest.mark.timeout(180)

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKEKEYID0000001",
    "AWS_SECRET_ACCESS_KEY": "fake-secret-access-key-0001",
    "AWS_SESSION_TOKEN": "fake-session-token-0001",
    "AWS_SECURITY_TOKEN": "fake-security-token-0001",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN": "fake-container-token-0001",
    "MLFLOW_TRACKING_PASSWORD": "fake-mlflow-password-0001",
    "MLFLOW_TRACKING_TOKEN": "fake-mlflow-token-0001",
    "HF_TOKEN": "fake-hf-token-0001",
}
SETTINGS = {
    "AWS_ENDPOINT_URL": "http://s3.internal:9000",
    "AWS_REGION": "eu-west-3",
    "AWS_PROFILE": "training",
    "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/trainer",
    "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/token",
    "MLFLOW_TRACKING_URI": "http://mlflow.internal:5000",
    "HF_HUB_OFFLINE": "1",
}


def test_forwarded_env_holds_settings_never_secrets():
    env = _forwarded_env({**SECRETS, **SETTINGS, "PATH": "/usr/bin"})
    assert env == SETTINGS
    assert not set(SECRETS.values()) & set(env.values())
    assert set(env) <= set(FORWARDED_ENV)


class _Stop(Exception):
    """Stands in for a training run: the test wants what the run would hand Ray, not the run."""


def test_the_job_handed_to_ray_carries_no_secret(tiny_store, mlflow_sqlite, tmp_path, monkeypatch):
    import ray.train.torch

    import infra.ray_runtime

    for key, value in {**SECRETS, "AWS_REGION": "eu-west-3"}.items():
        monkeypatch.setenv(key, value)
    handed: dict = {}

    class Trainer:
        def __init__(self, *args, **kwargs) -> None:
            handed.update(kwargs)

        def fit(self):
            raise _Stop

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", Trainer)
    monkeypatch.setattr(infra.ray_runtime, "init_ray", lambda *args: None)
    monkeypatch.setattr(infra.ray_runtime, "cluster_capacity", lambda: ({"CPU": 2.0, "GPU": 0.0}, True))
    cfg = load_config("tiny", ["crop_hw=64,96", f"storage_path={tmp_path / 'ray'}"])
    with pytest.raises(_Stop):
        train(cfg, tiny_store)
    runtime_env = handed["run_config"].worker_runtime_env
    assert runtime_env["env_vars"]["AWS_REGION"] == "eu-west-3"
    # Neither the workers' runtime env nor the loop's config (both stored by Ray) holds a secret value.
    for value in SECRETS.values():
        assert value not in repr(runtime_env) and value not in repr(handed["train_loop_config"])


def _synthetic_src(tmp_path) -> str:
    generate(str(tmp_path / "src"), 1, cameras=(Camera("a", 100.0, 64, 48, "kitti", "train"),))
    return str(tmp_path / "src")


@pytest.mark.s3
def test_a_missing_bucket_is_one_clear_line_and_create_bucket_makes_it(s3_endpoint, tmp_path, capsys):
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    typo = f"t-typo-bucket-{tmp_path.name[-12:].lower().replace('_', '-')}"
    args = ["--dataset", "synthetic", "--src", _synthetic_src(tmp_path), "--store", f"s3://{typo}/store"]
    assert ingest_run.main([*args, "--workers", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: bucket {typo} does not exist at {s3_endpoint}; create it, or pass --create-bucket\n"
    assert not fs.exists(typo)
    with pytest.raises(StoreError, match=f"bucket {typo} does not exist"):
        open_store(f"s3://{typo}/store", create=True)
    assert ingest_run.main([*args, "--workers", "0", "--quiet", "--create-bucket"]) == 0
    assert fs.exists(typo) and open_store(f"s3://{typo}/store").catalog().num_rows == 1
