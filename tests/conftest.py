"""Shared fixtures: the real samples, a moto S3 server on 127.0.0.1, one local Ray runtime per session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched from a hub, ever: fail fast instead of retrying
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# The test machine's own credential chain (moto accepts any keys): set before any Ray runtime starts, so Ray
# workers find them in their node's environment, as cluster nodes do; train.run never forwards secrets.
for _key, _value in (
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
):
    os.environ.setdefault(_key, _value)


@pytest.fixture(scope="session")
def real_root() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"real samples not found at {REAL} (they live beside the checkout in shared/data/real)")
    return REAL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory):
    """A real S3-compatible HTTP endpoint: moto's standalone server, credentials and endpoint in the env."""
    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto_server did not start")
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url,
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield url
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture
def s3_bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> str:
    """A fresh, existing bucket per test, created as a user would (a store never creates one unasked)."""
    import s3fs

    name = "".join(c for c in request.node.name.lower() if c.isalnum())[:40]
    bucket = f"t-{name}-{os.getpid()}"
    s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True).mkdir(bucket)
    return f"s3://{bucket}"


@pytest.fixture
def mlflow_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real MLflow store in a SQLite file of this test's own folder (artifacts beside it)."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # artifacts land in tmp_path/mlartifacts
    # MLflow keeps the last set_tracking_uri / set_registry_uri of the process, over the environment: point both
    # here, so no earlier test's store or server answers for this one.
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture(scope="session")
def ray_runtime():
    import ray

    from infra.ray_runtime import init_ray

    init_ray(2)
    yield
    ray.shutdown()


TINY_CAMERAS_SPEC = (
    # name, f_px, width, height, layout, split (NYU's layout implies its own camera: 640x480, fixed K)
    ("cam_f80", 80.0, 96, 64, "kitti", "train"),
    ("cam_f140", 140.0, 96, 64, "kitti", "train"),
    ("cam_f110", 110.0, 96, 64, "kitti", "val"),
    ("kinect", 518.8579, 640, 480, "nyu", "train", 325.58245, 253.73617),
    ("kinect", 518.8579, 640, 480, "nyu", "test", 325.58245, 253.73617),
)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small multi-camera synthetic store: synthetic_kitti (sparse, 3 focal lengths) and synthetic_nyu."""
    from ingest.engine import ingest
    from ingest.synthetic import Camera, generate

    root = tmp_path_factory.mktemp("tiny")
    cams = tuple(Camera(*spec) for spec in TINY_CAMERAS_SPEC)
    generate(str(root / "src"), scenes_per_camera=6, cameras=cams)
    summary = ingest("synthetic", str(root / "src"), str(root / "store"), workers=0, progress=False)
    assert (summary.ingested, summary.quarantined) == (30, 0)
    return str(root / "store")


@pytest.fixture
def mlflow_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A real `mlflow server` (SQLite backend, proxied artifacts) on 127.0.0.1, MLFLOW_TRACKING_URI pointing at it."""
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    exe = shutil.which("mlflow") or str(Path(sys.executable).parent / "mlflow")
    proc = subprocess.Popen(
        [
            exe,
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=1).read() == b"OK":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not become healthy")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.chdir(tmp_path)
    yield url
    proc.terminate()
    proc.wait(20)
