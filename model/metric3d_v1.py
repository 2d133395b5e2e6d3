"""Metric3D v1 (ConvNeXt + hourglass decoder) on timm, loading the official checkpoints key by key.

forward() takes the official network input (ImageNet-normalised Bx3xHxW float32, H and W multiples of 32) and
returns (depth, confidence), each Bx1xHxW: depth in canonical metres (focal F_CANONICAL_PX), confidence the raw
logit, as the official `prediction` and `confidence` outputs. infer() takes a photo and its intrinsics and
returns metres, preprocessing as the official test code does (label-mode CSTM, fit into the input size,
centred padding with the ImageNet mean). TrainableMetric3DV1 is the same network as train.loop drives every
model: uint8 batch in, canonical depth out (the confidence is not trained, see docs/decisions.md).

Hyper-parameters (the registry entries in model.config), from the official configs
mono/configs/HourglassDecoder/conv{tiny,large}.0.3_150.py and their _base_ files: ConvNeXt-Tiny / -Large encoders
(drop_path_rate 0.4), decoder_channel [64, 64, 128, 256] / [128, 128, 256, 512], depth_normalize (0.3, 150)
canonical metres, crop_size (544, 1216), canonical focal 1000 px.
"""

from __future__ import annotations

import re
from dataclasses import asdict, replace

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn

from model.config import MODELS, Metric3DV1Config
from model.device import assign_weights, skip_init
from model.hourglass import HourglassDecoder
from model.net import IMAGENET_MEAN, IMAGENET_STD, backproject, load_state
from pipelines.cstm import from_network, to_network

ARCH = "metric3d_v1"  # the `arch` entry of our checkpoints holding this network (model.net.load_checkpoint)
# The official test code pads the uint8 photo with the ImageNet mean, which OpenCV rounds to whole levels.
PAD_RGB = tuple(round(v) for v in IMAGENET_MEAN)  # (124, 116, 104)
MAX_DEPTH_M = 300.0  # the official demo clamps metric predictions to [0, 300] m
ENCODER_STRIDE = 32  # the ConvNeXt's coarsest feature map: input sides must be multiples of it


# The Metric3D v1 entries of the model registry (model.config.MODELS).
VARIANTS: dict[str, Metric3DV1Config] = {n: c for n, c in MODELS.items() if isinstance(c, Metric3DV1Config)}


def get_variant(name: str, **overrides: object) -> Metric3DV1Config:
    """The registered variant `name` (with field overrides); an unknown name raises and lists the valid ones."""
    try:
        base = VARIANTS[name]
    except KeyError:
        raise KeyError(f"unknown Metric3D v1 variant {name!r}; valid: {', '.join(sorted(VARIANTS))}") from None
    return replace(base, **overrides) if overrides else base


class Metric3DV1(nn.Module):
    """timm ConvNeXt (features at strides 4-32) + the hourglass decoder."""

    def __init__(self, config: Metric3DV1Config) -> None:
        super().__init__()
        if any(v % ENCODER_STRIDE for v in config.input_hw):
            raise ValueError(f"input_hw {config.input_hw}: both sides must be multiples of 32 (the encoder stride)")
        self.config = config
        weights = {"pretrained": False}
        if config.pretrained_path:
            weights = {"pretrained": True, "pretrained_cfg_overlay": {"file": config.pretrained_path}}
        self.encoder = timm.create_model(
            config.encoder, features_only=True, drop_path_rate=config.drop_path_rate, **weights
        )
        channels = tuple(self.encoder.feature_info.channels())  # strides 4, 8, 16, 32
        self.decoder = HourglassDecoder(channels, config.decoder_widths, config.depth_range_c)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def network(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised Bx3xHxW -> (depth canonical metres, confidence logit), each Bx1xHxW."""
        return self.decoder(self.encoder(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The official network's outputs: see network()."""
        return self.network(x)

    @torch.no_grad()
    def infer(self, rgb: np.ndarray, k_px: tuple[float, float, float, float]) -> dict[str, np.ndarray]:
        """A photo (uint8 HxWx3) and its intrinsics (fx, fy, cx, cy) in pixels -> depth_m, points_m (metres), k_px."""
        self.eval()
        h, w = rgb.shape[:2]
        net_h, net_w = self.config.input_hw
        # Label-mode CSTM: the photo is only fitted into the input, its labels carry the focal (depth_c = depth_m
        # * F_CANONICAL_PX / f of the resized photo); then centred in the input, padded as the official code does.
        net_rgb, plan = to_network(rgb, k_px, "label", min(net_h / h, net_w / w))
        rh, rw = net_rgb.shape[:2]
        top, left = (net_h - rh) // 2, (net_w - rw) // 2
        canvas = np.empty((net_h, net_w, 3), np.uint8)
        canvas[:] = PAD_RGB
        canvas[top : top + rh, left : left + rw] = net_rgb
        device = self.mean.device
        x = torch.from_numpy(canvas).to(device).permute(2, 0, 1)[None].float()
        depth_c, _ = self.network((x - self.mean) / self.std)
        depth_c = depth_c[0, 0, top : top + rh, left : left + rw].float().cpu().numpy()
        depth_m = np.clip(from_network(depth_c, plan, (h, w)), 0.0, MAX_DEPTH_M)
        return {"depth_m": depth_m, "points_m": backproject(depth_m, k_px), "k_px": np.asarray(k_px, np.float64)}


class TrainableMetric3DV1(Metric3DV1):
    """Metric3D v1 as train.loop drives every model: forward(rgb 0-255) -> canonical depth, same weights and keys."""

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb Bx3xHxW (uint8 or 0-255 float) -> depth Bx1xHxW canonical metres, float32; pads to the stride inside."""
        h, w = rgb.shape[-2:]
        x = (rgb.float() - self.mean) / self.std
        # Zero after normalisation is the ImageNet mean colour, what the official test code pads with; bottom and
        # right only, so the prediction's top-left h x w is the image's. Training crops are usually multiples already.
        x = F.pad(x, (0, (-w) % ENCODER_STRIDE, 0, (-h) % ENCODER_STRIDE))
        depth, _ = self.network(x)
        return depth[..., :h, :w].float()


def build_metric3d_v1(name: str) -> Metric3DV1:
    """A randomly initialised variant (no ImageNet weights are fetched)."""
    return Metric3DV1(get_variant(name))


# -- official checkpoints -------------------------------------------------------------------------------------
OFFICIAL_PREFIX = "depth_model."
# Official key (after OFFICIAL_PREFIX) -> ours, as (full-match regex, template). The official neck names its
# steps by pyramid level (upconv_3 at stride 32 ... upconv_1 at stride 8), ours by order (0, 1, 2); the official
# 3x3 blocks are Sequential(ReflectionPad2d, Conv2d), hence their `.conv.1.` where ours is one padded conv.
OFFICIAL_KEY_RULES: tuple[tuple[str, str], ...] = (
    # encoder: official ConvNeXt -> timm ConvNeXt (features_only flattens stem.0 -> stem_0, stages.1 -> stages_1)
    (r"encoder\.downsample_layers\.0\.([01])\.(\w+)", r"encoder.stem_\1.\2"),
    (r"encoder\.downsample_layers\.([123])\.([01])\.(\w+)", r"encoder.stages_\1.downsample.\2.\3"),
    (r"encoder\.stages\.(\d)\.(\d+)\.dwconv\.(\w+)", r"encoder.stages_\1.blocks.\2.conv_dw.\3"),
    (r"encoder\.stages\.(\d)\.(\d+)\.norm\.(\w+)", r"encoder.stages_\1.blocks.\2.norm.\3"),
    (r"encoder\.stages\.(\d)\.(\d+)\.pwconv1\.(\w+)", r"encoder.stages_\1.blocks.\2.mlp.fc1.\3"),
    (r"encoder\.stages\.(\d)\.(\d+)\.pwconv2\.(\w+)", r"encoder.stages_\1.blocks.\2.mlp.fc2.\3"),
    (r"encoder\.stages\.(\d)\.(\d+)\.gamma", r"encoder.stages_\1.blocks.\2.gamma"),
    # decoder neck
    (r"decoder\.decoder_mono\.upconv_3_0\.conv\.(\w+)", r"decoder.neck.reduce.0.0.\1"),
    (r"decoder\.decoder_mono\.upconv_3_1\.conv\.(\w+)", r"decoder.neck.fuse.0.0.\1"),
    (r"decoder\.decoder_mono\.upconv_3_1\.conv_2\.(\w+)", r"decoder.neck.fuse.0.2.\1"),
    (r"decoder\.decoder_mono\.upconv_2_0\.conv\.1\.(\w+)", r"decoder.neck.reduce.1.0.\1"),
    (r"decoder\.decoder_mono\.upconv_2_1\.conv\.1\.(\w+)", r"decoder.neck.fuse.1.0.\1"),
    (r"decoder\.decoder_mono\.upconv_2_1\.conv_2\.(\w+)", r"decoder.neck.fuse.1.2.\1"),
    (r"decoder\.decoder_mono\.upconv_1_0\.conv\.1\.(\w+)", r"decoder.neck.reduce.2.0.\1"),
    (r"decoder\.decoder_mono\.upconv_1_1\.conv\.1\.(\w+)", r"decoder.neck.fuse.2.0.\1"),
    (r"decoder\.decoder_mono\.upconv_1_1\.conv_2\.(\w+)", r"decoder.neck.fuse.2.2.\1"),
    # decoder hourglass (official UNet: conv0, conv_<i>.<j>.{conv,bn}, deconv_<i>, prob)
    (r"decoder\.conv_out_2\.conv0\.conv\.(\w+)", r"decoder.hourglass.stem.0.\1"),
    (r"decoder\.conv_out_2\.conv0\.bn\.(\w+)", r"decoder.hourglass.stem.1.\1"),
    (r"decoder\.conv_out_2\.conv_(\d)\.([01])\.conv\.(\w+)", r"decoder.hourglass.down.\1.\2.0.\3"),
    (r"decoder\.conv_out_2\.conv_(\d)\.([01])\.bn\.(\w+)", r"decoder.hourglass.down.\1.\2.1.\3"),
    (r"decoder\.conv_out_2\.deconv_(\d)\.([01])\.(\w+)", r"decoder.hourglass.up.\1.\2.\3"),
    (r"decoder\.conv_out_2\.prob\.(\w+)", r"decoder.hourglass.head.\1"),
    # decoder heads: bin classifier and refinement, same layer indices as the official Sequentials
    (r"decoder\.depth_regressor_2\.(\d)\.(\w+)", r"decoder.bin_logits.\1.\2"),
    (r"decoder\.conv_up_2\.(\d)\.(\w+)", r"decoder.refine.\1.\2"),
)
_RULES = tuple((re.compile(pattern), template) for pattern, template in OFFICIAL_KEY_RULES)


def map_official_key(key: str) -> str | None:
    """Our state_dict name for an official key, or None when no rule covers it."""
    if not key.startswith(OFFICIAL_PREFIX):
        return None
    rest = key.removeprefix(OFFICIAL_PREFIX)
    for pattern, template in _RULES:
        match = pattern.fullmatch(rest)
        if match:
            return match.expand(template)
    return None


def _short_list(keys: list[str], limit: int = 20) -> str:
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def convert_official_state(official: dict[str, torch.Tensor], model: Metric3DV1) -> dict[str, torch.Tensor]:
    """Official `model_state_dict` -> our state_dict; every official key used once and every one of ours filled."""
    ours = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    leftover, bad_shape = [], []
    for key, value in official.items():
        name = map_official_key(key)
        if name is None or name not in ours or name in out:
            leftover.append(key)
        elif tuple(value.shape) != tuple(ours[name].shape):
            bad_shape.append(f"{key} {tuple(value.shape)} -> {name} {tuple(ours[name].shape)}")
        else:
            out[name] = value
    missing = [name for name in ours if name not in out]
    problems = []
    if leftover:
        problems.append(f"{len(leftover)} official keys left over (no rule maps them): {_short_list(leftover)}")
    if missing:
        problems.append(f"{len(missing)} of our keys missing from the checkpoint: {_short_list(missing)}")
    if bad_shape:
        problems.append(f"{len(bad_shape)} shape mismatches: {_short_list(bad_shape)}")
    if problems:
        raise ValueError(f"official checkpoint does not fit {model.config.name}: " + "; ".join(problems))
    return out


def read_official_state(path: str) -> dict[str, torch.Tensor]:
    """The `model_state_dict` of an official checkpoint file, read with weights_only=True (no code runs)."""
    checkpoint = load_state(path)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model_state_dict"), dict):
        raise ValueError(f"{path}: not an official Metric3D checkpoint (a dict with 'model_state_dict')")
    return checkpoint["model_state_dict"]


def variant_of(official: dict[str, torch.Tensor]) -> str:
    """The variant an official state dict belongs to, told by the width of its coarsest neck layer."""
    key = OFFICIAL_PREFIX + "decoder.decoder_mono.upconv_3_0.conv.weight"
    if key not in official:
        raise ValueError(f"not a Metric3D v1 ConvNeXt checkpoint: no {key}")
    width = official[key].shape[0]
    found = [name for name, cfg in VARIANTS.items() if cfg.decoder_widths[-1] == width]
    if len(found) != 1:
        raise ValueError(
            f"no single Metric3D v1 variant has a {width}-channel stride-32 neck; known: {sorted(VARIANTS)}"
        )
    return found[0]


def official_model(official: dict[str, torch.Tensor], name: str, input_hw: tuple[int, int] | None = None) -> Metric3DV1:
    """An official state dict -> our network for variant `name` (input_hw: infer()'s input size), in eval mode."""
    model = Metric3DV1(get_variant(name, **({"input_hw": tuple(input_hw)} if input_hw else {})))
    model.load_state_dict(convert_official_state(official, model))
    return model.eval()


def load_official(path: str, name: str, input_hw: tuple[int, int] | None = None) -> Metric3DV1:
    """An official Metric3D v1 checkpoint file -> our network for variant `name`, in eval mode."""
    return official_model(read_official_state(path), name, input_hw)


# -- our checkpoints ------------------------------------------------------------------------------------------
def save_checkpoint(path: str, model: Metric3DV1, extra: dict | None = None) -> None:
    """Our format, as model.net.save_checkpoint plus `arch`: weights + resolved config (+ lineage etc.)."""
    torch.save({"arch": ARCH, "model_config": asdict(model.config), "model": model.state_dict(), **(extra or {})}, path)


def from_checkpoint_state(state: dict) -> Metric3DV1:
    """The network held by a checkpoint written by save_checkpoint above, in eval mode."""
    cfg = dict(state["model_config"])
    for field in ("decoder_widths", "depth_range_c", "input_hw"):
        cfg[field] = tuple(cfg[field])
    cfg["pretrained_path"] = None  # the checkpoint holds the trained weights already
    with skip_init():
        model = Metric3DV1(Metric3DV1Config(**cfg))
    assign_weights(model, state["model"])
    return model.eval()
