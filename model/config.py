"""Model variants by name: a frozen config each, in one registry that fails loudly and lists the names.

Two architectures: our UNet with an exp head (ModelConfig, model.net) and Metric3D v1, ConvNeXt + hourglass
decoder (Metric3DV1Config, model.metric3d_v1). Both train through train.loop and run `infer()` in evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

CSTM_LABEL = "label"


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


@dataclass(frozen=True)
class Metric3DV1Config:
    """One Metric3D v1 variant; saved inside our checkpoints.

    encoder: timm ConvNeXt name; decoder_widths: neck channels per stride (4, 8, 16, 32), the official
    decoder_channel; depth_range_c: the depth bins' span in canonical metres; input_hw: the network input
    (height, width) an infer() call fits a photo into, multiples of 32; drop_path_rate: the encoder's stochastic
    depth in training (official backbone configs: 0.4); pretrained_path: a local ImageNet weights file for the
    encoder; cstm: always "label", the only canonical transform the official model is trained and run in."""

    name: str
    encoder: str
    decoder_widths: tuple[int, int, int, int]
    depth_range_c: tuple[float, float] = (0.3, 150.0)
    input_hw: tuple[int, int] = (544, 1216)
    drop_path_rate: float = 0.0
    pretrained_path: str | None = None
    cstm: str = CSTM_LABEL

    def __post_init__(self) -> None:
        if self.cstm != CSTM_LABEL:
            raise ValueError(f"{self.name}: Metric3D v1 runs CSTM label mode only; got cstm={self.cstm!r}")


MODELS: dict[str, ModelConfig | Metric3DV1Config] = {
    # Our UNet + exp head on ConvNeXt-Large (210 M parameters): not the paper's network (see metric3d_v1_*).
    "unet_convnext_large": ModelConfig("unet_convnext_large", "convnext_large", decoder_width=512),
    # ConvNeXt-Atto (3.4 M) + UNet: CPU demos in minutes.
    "metric3d_atto": ModelConfig("metric3d_atto", "convnext_atto", decoder_width=128, infer_hw=(256, 352)),
    # timm's registered test ConvNeXt (0.2 M) + UNet: tests.
    "metric3d_tiny": ModelConfig("metric3d_tiny", "test_convnext", decoder_width=64, infer_hw=(128, 160)),
    # Metric3D v1 as released (official configs mono/configs/HourglassDecoder/conv{tiny,large}.0.3_150.py).
    # convtiny_hourglass_v1.pth: ConvNeXt-Tiny, 28 M parameters in the encoder.
    "metric3d_v1_convtiny": Metric3DV1Config(
        "metric3d_v1_convtiny", "convnext_tiny", (64, 64, 128, 256), drop_path_rate=0.4
    ),
    # convlarge_hourglass_0.3_150_step750k_v1.1.pth: ConvNeXt-Large, 196 M parameters in the encoder.
    "metric3d_v1_convlarge": Metric3DV1Config(
        "metric3d_v1_convlarge", "convnext_large", (128, 128, 256, 512), drop_path_rate=0.4
    ),
}


def get_model_config(name: str, **overrides: object) -> ModelConfig | Metric3DV1Config:
    """The registered config `name` with field overrides; an unknown name raises and lists the valid ones."""
    try:
        base = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}") from None
    return replace(base, **overrides) if overrides else base


# How infer() meets a photo: the CLIs list these without importing torch.
INFER_SCALES = {
    "fit": "fit the photo into the model's infer_hw (bounded time and memory for any photo size)",
    "native": "the photo's own pixels, padded to the encoder stride and the prediction cropped back",
}
