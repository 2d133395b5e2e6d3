"""A dataset root on any fsspec URL, with reads that cannot escape it and errors that name the file."""

from __future__ import annotations

import gzip
import io
import posixpath
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import fsspec

from store.codecs import image_size
from store.fs import StorageUnavailable, retry_io, url_to_fs

T = TypeVar("T")
# Bounds on one input, checked before anything is decoded, so one huge or crafted file is quarantined instead
# of OOM-killing a worker (then Ray retries it, and every re-run dies at the same place). 100 MP: a 16-bit RGBA
# image of that size decodes to 800 MB. 1 GiB: far above any image or lidar frame of the supported datasets.
MAX_IMAGE_PIXELS = 100_000_000
MAX_FILE_BYTES = 1 << 30


class SourceError(ValueError):
    """One input file is missing, unreadable or wrong. `file` is the path relative to the dataset root."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


class SourceUnavailable(StorageUnavailable):
    """The source's storage did not answer (timeouts, throttling, resets, permissions) after the retries:
    a transient fault that stops the run; it is never quarantined, so a re-run reads the item again."""


def retry_source(what: str, fn: Callable[[], T]) -> T:
    """A source read with transient faults retried (store.fs.retry_io), then SourceUnavailable naming `what`."""
    return retry_io(what, fn, error=SourceUnavailable, hint="nothing was quarantined: re-run once the source answers")


@dataclass(frozen=True)
class Source:
    """A dataset root and the bounds on what one of its files may hold (they travel with it to the workers)."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    max_file_bytes: int = MAX_FILE_BYTES
    max_image_pixels: int = MAX_IMAGE_PIXELS

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
        return retry_source(self.label(rel), lambda: fs.exists(path))

    def read_bytes(self, rel: str) -> bytes:
        """The whole file, refused (SourceError) when over max_file_bytes, asked before reading, or when it is a
        PNG or JPEG whose header declares more than max_image_pixels: nothing has decoded it yet."""
        fs, root = self.fs_root
        path = f"{root}/{self.safe_rel(rel)}"
        try:
            size = retry_source(self.label(rel), lambda: fs.size(path))
            if size is not None and size > self.max_file_bytes:
                raise self.over_bytes(rel, f"file of {size} bytes")
            data = retry_source(self.label(rel), lambda: fs.cat_file(path))
        except FileNotFoundError:
            raise SourceError(rel, "file not found") from None
        except (IsADirectoryError, NotADirectoryError):
            raise SourceError(rel, "is a folder, expected a file") from None
        if len(data) > self.max_file_bytes:  # the file grew after its size was asked
            raise self.over_bytes(rel, f"file of {len(data)} bytes")
        if header := image_size(data):
            self.check_pixels(rel, *header)
        return data

    def read_gzip(self, rel: str) -> bytes:
        """A gzip file's content, refused when it expands beyond max_file_bytes: a small .gz can hold a thousand
        times its size, so decompression stops one chunk past the limit."""
        data = self.read_bytes(rel)  # outside the try: a storage fault (an OSError) is not a bad gzip file
        chunks, total = [], 0
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
                # 1 MiB reads: one read(limit + 1) would allocate the whole limit up front, whatever the content.
                while chunk := f.read(1 << 20):
                    total += len(chunk)
                    if total > self.max_file_bytes:
                        raise self.over_bytes(rel, "gzip content (decompression stopped there)")
                    chunks.append(chunk)
        except (OSError, EOFError, zlib.error) as exc:
            raise SourceError(rel, f"not a readable gzip file ({exc})") from None
        return b"".join(chunks)

    def check_pixels(self, rel: str, height: int, width: int) -> None:
        """Refuse an image of more than max_image_pixels, from its header, before anything allocates it."""
        if height * width > self.max_image_pixels:
            raise SourceError(
                rel,
                f"image of {width}x{height} pixels ({height * width / 1e6:.1f} MP) is over the limit of "
                f"{self.max_image_pixels / 1e6:g} MP (--max-image-pixels {self.max_image_pixels}; raise it to "
                "ingest this image)",
            )

    def over_bytes(self, rel: str, what: str) -> SourceError:
        """The error for a file, or what it expands to, beyond max_file_bytes (`what` says which, and its size)."""
        limit = self.max_file_bytes
        return SourceError(
            rel, f"{what} is over the limit of {limit} bytes (--max-file-bytes {limit}; raise it to ingest this file)"
        )

    def read_text(self, rel: str) -> str:
        try:
            return self.read_bytes(rel).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SourceError(rel, f"not UTF-8 text ({exc})") from None

    def glob(self, pattern: str) -> list[str]:
        """Relative paths under the root matching `pattern`, sorted."""
        fs, root = self.fs_root
        n = len(root) + 1
        return sorted(p[n:] for p in retry_source(f"{self.url}/{pattern}", lambda: fs.glob(f"{root}/{pattern}")))
