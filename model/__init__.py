"""Networks (timm ConvNeXt + UNet decoder; Metric3D v1 for official checkpoints), losses, and checkpoint I/O."""

from model.config import MODELS, ModelConfig, get_model_config
from model.metric3d_v1 import Metric3DV1, build_metric3d_v1, load_official
from model.net import DepthNet, backproject, build_model, load_checkpoint, save_checkpoint

__all__ = [
    "MODELS",
    "DepthNet",
    "Metric3DV1",
    "ModelConfig",
    "backproject",
    "build_metric3d_v1",
    "build_model",
    "get_model_config",
    "load_checkpoint",
    "load_official",
    "save_checkpoint",
]
