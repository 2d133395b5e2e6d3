"""Training data: CSTM, balanced deterministic sampling, loading (in-process and Ray Data).

The loading names import torch; they load on first use, so `pipelines.sampling` and `pipelines.cstm` stay
light (a catalog process or a `--help` does not pay for torch).
"""

from importlib import import_module
from typing import Any

from pipelines.cstm import CSTM_MODES
from pipelines.sampling import epoch_order

_LAZY = {
    name: "pipelines.loading"
    for name in ("catalog_digest", "iter_torch", "plan_epoch", "training_batches", "training_dataset")
}

__all__ = ["CSTM_MODES", "epoch_order", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
