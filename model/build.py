"""Registry config -> trainable network, and its checkpoint writer: one lookup by config type for both."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from model import metric3d_v1, net
from model.config import Metric3DV1Config, ModelConfig

# Config type -> (network class as train.loop drives it, checkpoint writer). Both networks take rgb 0-255 in
# forward() and return canonical depth Bx1xHxW; both checkpoints load with model.net.load_checkpoint.
_ARCHITECTURES: dict[type, tuple[Callable[..., nn.Module], Callable[..., None]]] = {
    ModelConfig: (net.DepthNet, net.save_checkpoint),
    Metric3DV1Config: (metric3d_v1.TrainableMetric3DV1, metric3d_v1.save_checkpoint),
}


def _entry(config: object) -> tuple[Callable[..., nn.Module], Callable[..., None]]:
    try:
        return _ARCHITECTURES[type(config)]
    except KeyError:
        valid = ", ".join(t.__name__ for t in _ARCHITECTURES)
        raise TypeError(f"no network for a {type(config).__name__}; valid config types: {valid}") from None


def build_model(config: ModelConfig | Metric3DV1Config) -> nn.Module:
    """A randomly initialised (or ImageNet-initialised, with pretrained_path) network for a registry config."""
    return _entry(config)[0](config)


def save_checkpoint(path: str, model: nn.Module, extra: dict | None = None) -> None:
    """Weights + resolved config (+ `extra`: optimizer state, lineage ...) in the format of the model's family."""
    _entry(model.config)[1](path, model, extra)
