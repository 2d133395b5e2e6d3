"""A dataset root on any fsspec URL, with reads that cannot escape it and errors that name the file."""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import fsspec

from store.fs import url_to_fs

T = TypeVar("T")
# Transient storage faults: tries and the first wait (doubling) before the run stops with one clear line.
READ_TRIES = 5
FIRST_WAIT_S = 0.2
# Exceptions of these packages come from the storage client itself (connection resets, throttling, 5xx).
_BACKEND_MODULES = ("botocore", "aiobotocore", "aiohttp", "urllib3", "requests", "s3fs", "fsspec")


class SourceError(ValueError):
    """One input file is missing, unreadable or wrong. `file` is the path relative to the dataset root."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


class SourceUnavailable(OSError):
    """The source's storage did not answer (timeouts, throttling, resets, permissions) after the retries:
    a transient fault that stops the run; it is never quarantined, so a re-run reads the item again."""


def is_transient(exc: BaseException) -> bool:
    """A storage fault rather than a fault of the input: worth retrying, never quarantined."""
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, SourceError)):
        return False
    if isinstance(exc, OSError):
        return True
    return type(exc).__module__.split(".")[0] in _BACKEND_MODULES


def retry_io(what: str, fn: Callable[[], T], tries: int = READ_TRIES, first_wait_s: float = FIRST_WAIT_S) -> T:
    """Call `fn`, retrying transient faults with exponential backoff; then SourceUnavailable naming `what`."""
    wait = first_wait_s
    for attempt in range(tries):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified right here
            if not is_transient(exc):
                raise
            if attempt == tries - 1:
                raise SourceUnavailable(
                    f"{what}: {type(exc).__name__}: {exc} (still failing after {tries} tries; a storage fault, "
                    "nothing was quarantined: re-run once the source answers)"
                ) from exc
            time.sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Source:
    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def fs_root(self) -> tuple[fsspec.AbstractFileSystem, str]:
        return url_to_fs(self.url, self.storage_options)

    def check_readable(self) -> None:
        fs, root = self.fs_root
        try:
            ok = fs.exists(root)
        except Exception as exc:  # noqa: BLE001 - backend errors (auth, endpoint) all mean unreadable
            raise FileNotFoundError(f"cannot read --src {self.url}: {exc}") from exc
        if not ok:
            raise FileNotFoundError(f"cannot read --src {self.url}: no such file or folder")

    def safe_rel(self, rel: str) -> str:
        """Normalise a path relative to the root; refuse one that climbs out of it."""
        norm = posixpath.normpath(rel.replace("\\", "/"))
        if norm.startswith("../") or norm == ".." or posixpath.isabs(norm):
            raise SourceError(rel, "path escapes the dataset root; only files under --src are read")
        return norm

    def uri(self, rel: str) -> str:
        return f"{self.url.rstrip('/')}/{self.safe_rel(rel)}"

    def label(self, rel: str) -> str:
        """The file's URI for messages and quarantine rows; never raises, whatever the path."""
        try:
            return self.uri(rel)
        except SourceError:
            return f"{rel} (outside {self.url})"

    def exists(self, rel: str) -> bool:
        fs, root = self.fs_root
        path = f"{root}/{self.safe_rel(rel)}"
        return retry_io(self.label(rel), lambda: fs.exists(path))

    def read_bytes(self, rel: str) -> bytes:
        fs, root = self.fs_root
        path = f"{root}/{self.safe_rel(rel)}"
        try:
            return retry_io(self.label(rel), lambda: fs.cat_file(path))
        except FileNotFoundError:
            raise SourceError(rel, "file not found") from None
        except (IsADirectoryError, NotADirectoryError):
            raise SourceError(rel, "is a folder, expected a file") from None

    def read_text(self, rel: str) -> str:
        try:
            return self.read_bytes(rel).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SourceError(rel, f"not UTF-8 text ({exc})") from None

    def glob(self, pattern: str) -> list[str]:
        """Relative paths under the root matching `pattern`, sorted."""
        fs, root = self.fs_root
        n = len(root) + 1
        return sorted(p[n:] for p in retry_io(f"{self.url}/{pattern}", lambda: fs.glob(f"{root}/{pattern}")))
