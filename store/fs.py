"""fsspec resolution: one code path for a local folder and an s3:// prefix."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

T = TypeVar("T")
# Transient storage faults: tries and the first wait (doubling) before one clear error. The storage clients
# retry first on their own (botocore, delta-rs), so these are retries of already-retried requests.
READ_TRIES = 5
FIRST_WAIT_S = 0.2
# Exceptions of these packages come from the storage client itself (connection resets, throttling, 5xx).
_BACKEND_MODULES = ("botocore", "aiobotocore", "aiohttp", "urllib3", "requests", "s3fs", "fsspec")


class StorageUnavailable(OSError):
    """Storage did not answer (timeouts, throttling, resets, permissions) after the retries: a transient
    fault, never a property of the data (never quarantined, never counted as a corrupt sample)."""


def is_transient(exc: BaseException) -> bool:
    """A storage fault rather than a fault of the data: worth retrying."""
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return False
    if isinstance(exc, OSError):
        return True
    return type(exc).__module__.split(".")[0] in _BACKEND_MODULES


def retry_io(
    what: str,
    fn: Callable[[], T],
    tries: int = READ_TRIES,
    first_wait_s: float = FIRST_WAIT_S,
    error: type[StorageUnavailable] = StorageUnavailable,
    hint: str = "",
    transient: Callable[[BaseException], bool] = is_transient,
) -> T:
    """Call `fn`, retrying the faults `transient` accepts with exponential backoff; then `error` naming `what`.
    The one retry loop of the project: stores, sources and the Delta tables each only say what is transient."""
    wait = first_wait_s
    for attempt in range(tries):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified right here
            if not transient(exc):
                raise
            if attempt == tries - 1:
                tail = f"; {hint}" if hint else ""
                raise error(
                    f"{what}: {type(exc).__name__}: {exc} (still failing after {tries} tries: a storage fault{tail})"
                ) from exc
            time.sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")


def storage_options_from_env(url: str) -> dict[str, Any]:
    """S3 settings from the usual environment: keys are read by botocore itself; the endpoint of an
    S3-compatible service (MinIO, moto, Ceph) comes from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL."""
    if not url.startswith("s3://"):
        return {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return {"endpoint_url": endpoint} if endpoint else {}


def where(url: str, storage_options: dict[str, Any] | None = None) -> str:
    """The URL and, for object storage, the endpoint it goes to: what an error message must name."""
    if not url.startswith("s3://"):
        return url
    options = {**storage_options_from_env(url), **(storage_options or {})}
    endpoint = options.get("endpoint_url") or (options.get("client_kwargs") or {}).get("endpoint_url")
    return f"{url} (endpoint {endpoint or 'AWS default'})"


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
