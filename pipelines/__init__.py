"""Training data: CSTM, balanced deterministic sampling, loading (in-process and Ray Data)."""

from pipelines.cstm import CSTM_MODES
from pipelines.loading import catalog_digest, iter_torch, plan_epoch, training_batches, training_dataset
from pipelines.sampling import epoch_order

__all__ = [
    "CSTM_MODES",
    "catalog_digest",
    "epoch_order",
    "iter_torch",
    "plan_epoch",
    "training_batches",
    "training_dataset",
]
