"""A dataset root on any fsspec URL, with reads that cannot escape it and errors that name the file."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

import fsspec

from store.fs import url_to_fs


class SourceError(ValueError):
    """One input file is missing, unreadable or wrong. `file` is the path relative to the dataset root."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


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

    def exists(self, rel: str) -> bool:
        fs, root = self.fs_root
        return fs.exists(f"{root}/{self.safe_rel(rel)}")

    def read_bytes(self, rel: str) -> bytes:
        fs, root = self.fs_root
        path = f"{root}/{self.safe_rel(rel)}"
        try:
            return fs.cat_file(path)
        except FileNotFoundError:
            raise SourceError(rel, "file not found") from None
        except IsADirectoryError:
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
        return sorted(p[n:] for p in fs.glob(f"{root}/{pattern}"))
