"""Networks (timm ConvNeXt + UNet decoder; Metric3D v1, trainable and from official checkpoints), losses, and
checkpoint I/O."""

from model.build import build_model, save_checkpoint
from model.config import MODELS, Metric3DV1Config, ModelConfig, get_model_config
from model.metric3d_v1 import Metric3DV1, TrainableMetric3DV1, build_metric3d_v1, load_official
from model.net import DepthNet, backproject, load_checkpoint

__all__ = [
    "MODELS",
    "DepthNet",
    "Metric3DV1",
    "Metric3DV1Config",
    "ModelConfig",
    "TrainableMetric3DV1",
    "backproject",
    "build_metric3d_v1",
    "build_model",
    "get_model_config",
    "load_checkpoint",
    "load_official",
    "save_checkpoint",
]
