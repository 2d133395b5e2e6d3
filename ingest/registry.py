"""Adapters by name. An unknown name fails and lists the valid ones; the CLI reads this same dict."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ingest.base import Adapter

ADAPTERS: dict[str, Adapter] = {}
A = TypeVar("A")


def register(cls: Callable[[], A]) -> Callable[[], A]:
    """Class decorator: instantiate and register under `cls.info.name`."""
    adapter = cls()
    name = adapter.info.name
    if name in ADAPTERS:
        raise ValueError(f"adapter {name!r} registered twice")
    ADAPTERS[name] = adapter
    return cls


def get_adapter(name: str) -> Adapter:
    _load_all()
    try:
        return ADAPTERS[name]
    except KeyError:
        raise KeyError(f"unknown dataset adapter {name!r}; valid: {', '.join(sorted(ADAPTERS))}") from None


def all_adapters() -> dict[str, Adapter]:
    _load_all()
    return dict(sorted(ADAPTERS.items()))


def _load_all() -> None:
    import ingest.adapters  # noqa: F401 - importing the package registers every adapter

    for adapter in ADAPTERS.values():
        unknown = sorted({other for other, _ in adapter.info.shares} - set(ADAPTERS))
        if unknown:
            raise ValueError(
                f"adapter {adapter.info.name!r} shares sources with unknown adapters {unknown}; "
                f"valid: {', '.join(sorted(ADAPTERS))}"
            )
