"""Network (timm ConvNeXt + UNet decoder), losses, and checkpoint I/O."""

from model.config import MODELS, ModelConfig, get_model_config
from model.net import DepthNet, backproject, build_model, load_checkpoint, save_checkpoint

__all__ = [
    "MODELS",
    "DepthNet",
    "ModelConfig",
    "backproject",
    "build_model",
    "get_model_config",
    "load_checkpoint",
    "save_checkpoint",
]
