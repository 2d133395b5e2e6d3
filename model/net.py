"""timm ConvNeXt encoder + UNet decoder predicting positive depth in canonical space at input resolution.

forward() works at network resolution for training: rgb uint8 (or float 0-255) Bx3xHxW in, depth
Bx1xHxW out (canonical metres when trained with CSTM). infer() takes a photo and its intrinsics and
hides CSTM, resize, pad and de-normalisation, returning metres.
"""

from __future__ import annotations

import math
import pickle
import re
from dataclasses import asdict
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn

from model.config import INFER_SCALES, ModelConfig
from model.device import assign_weights, skip_init
from pipelines.cstm import from_network, to_network

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
# Log-depth head: exp of a clamped output, starting near 10 canonical metres; the clamp keeps depth in
# [exp(-5), exp(7)] = [0.007, 1100] m, beyond any sensor, and the exp gradients finite.
_LOG_DEPTH_INIT, _LOG_DEPTH_RANGE = math.log(10.0), (-5.0, 7.0)
# How infer() sizes a photo for the network, by name (eval.run --scale reads this dict). Label and none modes train
# at the images' own pixel scale (times the 0.9-1.4 resize augmentation): `fit` may shrink a photo far outside that.
# Image mode always sees its canonical resize (F_CANONICAL_PX / f), the method itself, whichever is chosen.


class _Block(nn.Sequential):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class DepthNet(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        kwargs = {}
        if config.pretrained_path:
            kwargs = {"pretrained": True, "pretrained_cfg_overlay": {"file": config.pretrained_path}}
        self.encoder = timm.create_model(config.encoder, features_only=True, **kwargs)
        channels = self.encoder.feature_info.channels()  # fine -> coarse, e.g. [192, 384, 768, 1536]
        self.stride = self.encoder.feature_info.reduction()[-1]
        widths = [max(16, config.decoder_width >> i) for i in range(len(channels))][::-1]  # fine -> coarse
        self.bottleneck = _Block(channels[-1], widths[-1])
        # Each stage: upsample the coarser decoder output x2, concatenate the skip, two convs.
        self.stages = nn.ModuleList(
            _Block(widths[i + 1] + channels[i], widths[i]) for i in reversed(range(len(channels) - 1))
        )
        first_reduction = self.encoder.feature_info.reduction()[0]
        self.head = nn.Sequential(
            nn.Upsample(scale_factor=first_reduction, mode="bilinear", align_corners=False),
            nn.Conv2d(widths[0], widths[0], 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(widths[0], 1, 1),
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.constant_(self.head[-1].bias, _LOG_DEPTH_INIT)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb Bx3xHxW (uint8 or 0-255 float) -> depth Bx1xHxW > 0. Pads to the encoder stride inside."""
        h, w = rgb.shape[-2:]
        x = (rgb.float() - self.mean) / self.std  # normalised on the device: uint8 batches move 4x fewer bytes
        ph, pw = (-h) % self.stride, (-w) % self.stride
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        feats = self.encoder(x)
        y = self.bottleneck(feats[-1])
        for stage, skip in zip(self.stages, reversed(feats[:-1])):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = stage(torch.cat([y, skip], dim=1))
        y = self.head[:-1](y)
        # The last conv and the exp run in the weights' precision (float32) even under autocast: a bf16 log-depth
        # would be quantised in steps of 1.6-3.2 % of depth (8 mantissa bits on values of 2-7).
        with torch.autocast(y.device.type, enabled=False):
            log_depth = self.head[-1](y.to(self.head[-1].weight.dtype))[..., :h, :w]
            return torch.exp(log_depth.clamp(*_LOG_DEPTH_RANGE))

    @torch.no_grad()
    def infer(
        self, rgb: np.ndarray, k_px: tuple[float, float, float, float], scale: str = "fit"
    ) -> dict[str, np.ndarray]:
        """A photo (uint8 HxWx3) and its intrinsics (fx, fy, cx, cy) in pixels -> metric depth.

        Returns depth_m (HxW metres), points_m (HxWx3 camera-frame metres: x right, y down, z forward),
        depth_net (the raw network output) and the k_px used. The photo is sized for the network as `scale`
        says (INFER_SCALES), put through the model's CSTM, and the prediction mapped back to the photo's own
        size and camera."""
        if scale not in INFER_SCALES:
            raise ValueError(f"unknown infer scale {scale!r}; valid: {', '.join(INFER_SCALES)}")
        self.eval()
        h, w = rgb.shape[:2]
        mode = self.config.cstm
        # `fit`: label and none modes see the photo fitted into infer_hw (label mode absorbs the resize into the
        # canonical labels, none cannot). `native` and image mode: no resize here (image mode's is its CSTM);
        # forward() pads to the stride and crops its output back to the input's size.
        fit = scale == "fit" and mode != "image"
        ratio = min(self.config.infer_hw[0] / h, self.config.infer_hw[1] / w) if fit else 1.0
        net_rgb, plan = to_network(rgb, k_px, mode, ratio)
        device = next(self.parameters()).device
        x = torch.from_numpy(np.ascontiguousarray(net_rgb.transpose(2, 0, 1)))[None].to(device)
        depth_net = self(x)[0, 0].float().cpu().numpy()
        depth_m = from_network(depth_net, plan, (h, w))
        return {
            "depth_m": depth_m,
            "points_m": backproject(depth_m, k_px),
            "depth_net": depth_net,
            "k_px": np.asarray(k_px, np.float64),
        }


def backproject(depth_m: np.ndarray, k_px: tuple[float, float, float, float]) -> np.ndarray:
    """HxW z-depth -> HxWx3 camera-frame points (x right, y down, z forward), metres."""
    fx, fy, cx, cy = k_px
    h, w = depth_m.shape
    u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return np.stack([(u - cx) * depth_m / fx, (v - cy) * depth_m / fy, depth_m], axis=-1).astype(np.float32)


def save_checkpoint(path: str, model: DepthNet, extra: dict | None = None) -> None:
    """Weights + the resolved model config (+ anything else, e.g. optimizer state): loading needs nothing else."""
    torch.save({"model_config": asdict(model.config), "model": model.state_dict(), **(extra or {})}, path)


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """A checkpoint file holds pickled code or classes, not only tensors and plain values."""


def load_state(path: str, map_location: str | torch.device = "cpu") -> Any:
    """torch.load(weights_only=True): tensors and plain types only, so a crafted file cannot run code.
    Anything else is refused with an UnsafeCheckpointError naming the file and what it asked for."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is a page of advice; keep the one fact that matters: what the file asked for.
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        other = re.search(r"^\s*(Unsupported [^\n]*)", str(exc), re.MULTILINE)
        what = (
            f"it asks to call or build {found.group(1)}"
            if found
            else f"not a pickle of tensors and plain values ({other.group(1) if other else exc})"
        )
        raise UnsafeCheckpointError(
            f"{path}: refused to load: {what}; a checkpoint may hold only tensors and plain values "
            "(read with torch.load(weights_only=True), nothing in the file is run)"
        ) from None


def load_checkpoint(path: str, map_location: str = "cpu") -> tuple[nn.Module, dict]:
    """Any of our checkpoints -> (network in eval mode, the saved dict); imported Metric3D v1 ones by their `arch`."""
    state = load_state(path, map_location)
    if "arch" in state:  # only imported networks carry one; DepthNet checkpoints predate the field
        from model.metric3d_v1 import ARCH, from_checkpoint_state  # lazily: that module imports this one

        if state["arch"] != ARCH:
            raise ValueError(f"{path}: unknown network arch {state['arch']!r}; known: DepthNet (no arch), {ARCH}")
        return from_checkpoint_state(state), state
    cfg = dict(state["model_config"])
    cfg["infer_hw"] = tuple(cfg["infer_hw"])
    cfg["pretrained_path"] = None  # the checkpoint holds the trained weights already
    with skip_init():
        model = DepthNet(ModelConfig(**cfg))
    assign_weights(model, state["model"])
    model.eval()
    return model, state
