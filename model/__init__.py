"""Networks (timm ConvNeXt + UNet decoder; Metric3D v1, trainable and from official checkpoints), losses, and
checkpoint I/O.

The names load on first use (as in `pipelines`): `import model.device` or `model.config` does not pay for torch and
timm, so CLIs answer --help fast.
"""

from importlib import import_module
from typing import Any

_LAZY = {
    "build_model": "model.build",
    "save_checkpoint": "model.build",
    "MODELS": "model.config",
    "Metric3DV1Config": "model.config",
    "ModelConfig": "model.config",
    "get_model_config": "model.config",
    "Metric3DV1": "model.metric3d_v1",
    "TrainableMetric3DV1": "model.metric3d_v1",
    "build_metric3d_v1": "model.metric3d_v1",
    "load_official": "model.metric3d_v1",
    "DepthNet": "model.net",
    "backproject": "model.net",
    "load_checkpoint": "model.net",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
