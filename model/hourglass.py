"""Metric3D v1's hourglass decoder: four encoder maps (strides 4, 8, 16, 32) -> depth and confidence at input size.

Depth is classified, then refined: a stride-4 hourglass (small UNet) predicts logits over log-spaced depth bins,
the depth is their softmax expectation (canonical metres), and a light head adds a correction at full
resolution. The layer sizes fixed here (bins, hourglass widths, refinement width) are those of the official
HourglassDecoder for every encoder; what varies with the encoder is passed in.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

N_BINS = 512  # depth classes
BIN_FEATURES = 256  # hourglass channels that feed the bin classifier (one more carries the confidence)
HOURGLASS_WIDTHS = (128, 64, 32, 16)  # channels at strides 4, 8, 16, 32 inside the hourglass
REFINE_WIDTH = 16
REFINE_SCALE = 0.1  # the refinement head's output is added at a tenth of its size
OUTPUT_STRIDE = 4  # the decoder works at a quarter of the input size


def _conv_elu(c_in: int, c_out: int, k: int) -> nn.Sequential:
    # 3x3 convolutions pad by reflection, 1x1 need no padding.
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, padding_mode="reflect"), nn.ELU(inplace=True))


def _fuse(c_in: int, c_out: int, k: int) -> nn.Sequential:
    return nn.Sequential(*_conv_elu(c_in, c_out, k), nn.Conv2d(c_out, c_out, 1), nn.ELU(inplace=True))


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class PyramidNeck(nn.Module):
    """Encoder maps -> one stride-4 map: from stride 32 down, reduce, upsample x2 (nearest), concatenate the skip, fuse."""

    def __init__(self, enc_channels: tuple[int, ...], widths: tuple[int, ...]) -> None:
        super().__init__()
        # widths are per stride (4, 8, 16, 32) as in the official configs; the stride-4 entry is unused there too.
        c4, c8, c16, c32 = enc_channels
        _, w8, w16, w32 = widths
        # The coarsest step mixes with 1x1 convolutions only; the two finer steps use 3x3.
        self.reduce = nn.ModuleList([_conv_elu(c32, w32, 1), _conv_elu(w32, w16, 3), _conv_elu(w16, w8, 3)])
        self.fuse = nn.ModuleList([_fuse(c16 + w32, w32, 1), _fuse(c8 + w16, w16, 3), _fuse(c4 + w8, w8, 3)])
        self.out_channels = w8

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """feats fine -> coarse (strides 4, 8, 16, 32) -> B x out_channels x H/4 x W/4."""
        x = feats[-1]
        for reduce, fuse, skip in zip(self.reduce, self.fuse, reversed(feats[:-1])):
            x = fuse(torch.cat([F.interpolate(reduce(x), scale_factor=2, mode="nearest"), skip], dim=1))
        return x


class Hourglass(nn.Module):
    """A three-level UNet at stride 4: strided convs down, transposed convs up, skips added (not concatenated)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        w = HOURGLASS_WIDTHS
        self.stem = _conv_bn_relu(c_in, w[0])
        self.down = nn.ModuleList(
            nn.Sequential(_conv_bn_relu(w[i], w[i + 1], stride=2), _conv_bn_relu(w[i + 1], w[i + 1]))
            for i in range(len(w) - 1)
        )
        # up[i] brings level i + 1 back to level i; output_padding=1 makes it exactly x2 on even sizes.
        self.up = nn.ModuleList(
            nn.Sequential(
                nn.ConvTranspose2d(w[i + 1], w[i], 3, stride=2, padding=1, output_padding=1, bias=False),
                nn.BatchNorm2d(w[i]),
                nn.ReLU(inplace=True),
            )
            for i in range(len(w) - 1)
        )
        self.head = nn.Conv2d(w[0], c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x c_in x h x w (h, w multiples of 8) -> B x c_out x h x w."""
        levels = [self.stem(x)]
        for down in self.down:
            levels.append(down(levels[-1]))
        y = levels.pop()
        for i in reversed(range(len(self.up))):
            y = levels[i] + self.up[i](y)
        return self.head(y)


class HourglassDecoder(nn.Module):
    """Encoder maps -> (depth B x 1 x H x W in canonical metres, confidence logit B x 1 x H x W)."""

    def __init__(
        self, enc_channels: tuple[int, ...], widths: tuple[int, ...], depth_range: tuple[float, float]
    ) -> None:
        super().__init__()
        self.neck = PyramidNeck(enc_channels, widths)
        self.hourglass = Hourglass(self.neck.out_channels, BIN_FEATURES + 1)
        self.bin_logits = nn.Sequential(
            nn.Conv2d(BIN_FEATURES, N_BINS, 3, padding=1),
            nn.BatchNorm2d(N_BINS),
            nn.ReLU(inplace=True),
            nn.Conv2d(N_BINS, N_BINS, 1),
        )
        # Input: coarse depth (1) + pixel coordinates x, y at stride 4 (2) + bin features; output x4 larger.
        self.refine = nn.Sequential(
            nn.Conv2d(1 + 2 + BIN_FEATURES, REFINE_WIDTH, 3, padding=1),
            nn.BatchNorm2d(REFINE_WIDTH),
            nn.ReLU(),
            nn.Conv2d(REFINE_WIDTH, REFINE_WIDTH, 3, padding=1),
            nn.Upsample(scale_factor=OUTPUT_STRIDE, mode="nearest"),
            nn.Conv2d(REFINE_WIDTH, REFINE_WIDTH, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(REFINE_WIDTH, 1, 1),
        )
        # Bin centres uniform in log depth, float32 as the official code computes them.
        lo, hi = depth_range
        bins = torch.exp(torch.linspace(math.log(lo), math.log(hi), N_BINS))
        self.register_buffer("bins_c", bins.view(1, N_BINS, 1, 1), persistent=False)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """feats fine -> coarse -> (depth, confidence), both B x 1 x (4 h) x (4 w) for stride-4 size h x w."""
        out = self.hourglass(self.neck(feats))  # B x (BIN_FEATURES + 1) x h x w
        bin_feats, confidence = out[:, :-1], out[:, -1:]
        hidden = self.bin_logits[:-1](bin_feats)
        # The depth head (bin logits, their expectation, the refinement) runs in the weights' precision even under
        # autocast: bf16 keeps 8 mantissa bits, which would put ~0.4 % steps into logits, depth and its residual.
        dtype = self.bin_logits[-1].weight.dtype
        with torch.autocast(out.device.type, enabled=False):
            prob = self.bin_logits[-1](hidden.to(dtype)).softmax(dim=1)  # B x N_BINS x h x w
            coarse = torch.sum(prob * self.bins_c.to(dtype), dim=1, keepdim=True)  # expected depth, canonical metres
            b, _, h, w = coarse.shape
            # Raw pixel indices (not normalised) of the stride-4 grid, channel 0 = x (column), 1 = y (row).
            ys, xs = torch.meshgrid(
                torch.arange(h, dtype=dtype, device=coarse.device),
                torch.arange(w, dtype=dtype, device=coarse.device),
                indexing="ij",
            )
            grid = torch.stack([xs, ys]).expand(b, 2, h, w)
            residual = self.refine(torch.cat([coarse, grid, bin_feats.to(dtype)], dim=1))
            depth = F.interpolate(coarse, scale_factor=OUTPUT_STRIDE, mode="nearest") + REFINE_SCALE * residual
        return depth, F.interpolate(confidence, scale_factor=OUTPUT_STRIDE, mode="nearest")
