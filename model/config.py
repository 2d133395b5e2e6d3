"""Model variants by name: a frozen config each, in one registry that fails loudly and lists the names."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network; saved inside every checkpoint and logged to MLflow.

    encoder: a timm model name (features_only); decoder_width: channels of the deepest decoder stage,
    halved at each finer stage (never below 16); cstm: the canonical transform the model is trained and
    run in; infer_hw: the network input an `infer()` call fits a photo into (height, width);
    pretrained_path: a local ImageNet weights file for the encoder (nothing is fetched from a hub)."""

    name: str
    encoder: str
    decoder_width: int = 256
    cstm: str = "label"
    infer_hw: tuple[int, int] = (512, 960)
    pretrained_path: str | None = None


MODELS: dict[str, ModelConfig] = {
    # The paper's setting: ConvNeXt-Large encoder (196 M parameters).
    "metric3d": ModelConfig("metric3d", "convnext_large", decoder_width=512),
    # ConvNeXt-Atto (3.4 M): CPU demos in minutes.
    "metric3d_atto": ModelConfig("metric3d_atto", "convnext_atto", decoder_width=128, infer_hw=(256, 352)),
    # timm's registered test ConvNeXt (0.2 M): tests.
    "metric3d_tiny": ModelConfig("metric3d_tiny", "test_convnext", decoder_width=64, infer_hw=(128, 160)),
}


def get_model_config(name: str, **overrides: object) -> ModelConfig:
    try:
        base = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}") from None
    return replace(base, **overrides) if overrides else base
