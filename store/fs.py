"""fsspec resolution: one code path for a local folder and an s3:// prefix."""

from __future__ import annotations

import json
import os
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem


def storage_options_from_env(url: str) -> dict[str, Any]:
    """S3 settings from the usual environment: keys are read by botocore itself; the endpoint of an
    S3-compatible service (MinIO, moto, Ceph) comes from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL."""
    if not url.startswith("s3://"):
        return {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return {"endpoint_url": endpoint} if endpoint else {}


def parse_storage_options(text: str | None) -> dict[str, Any]:
    """`--storage-options '{"endpoint_url": "http://127.0.0.1:5556"}'` as a dict (JSON object)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f'--storage-options is not JSON ({exc}); example: \'{{"endpoint_url": "http://host:9000"}}\''
        ) from None
    if not isinstance(value, dict):
        raise ValueError("--storage-options must be a JSON object")
    return value


def url_to_fs(url: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path without protocol). Explicit options win over the environment's."""
    options = {**storage_options_from_env(url), **(storage_options or {})}
    fs, path = fsspec.core.url_to_fs(url, **options)
    return fs, path.rstrip("/")


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def atomic_write(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Readers see the whole object or nothing: a put is atomic on S3; locally write aside, then rename."""
    if is_local(fs):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)
