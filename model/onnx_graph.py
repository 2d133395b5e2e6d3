"""The photo -> metres graph that model.export writes: CSTM, resize and network as one exportable nn.Module.

photo_to_depth(net, (H, W)) takes image uint8 B x H x W x 3 and intrinsics float32 B x 4 and returns depth_m float32
B x H x W, computing what net.infer() computes for one photo (same resize, to the bit, same CSTM, same way back);
export_onnx writes it with torch's dynamo exporter, any batch. Kept apart from the CLI so `--help` needs no torch.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.metric3d_v1 import MAX_DEPTH_M, PAD_RGB, Metric3DV1
from model.net import DepthNet
from pipelines.cstm import resized_size
from schemas.camera import F_CANONICAL_PX

# ONNX keeps weights inside the file up to protobuf's 2 GiB limit; larger models write them beside it (.data).
_PROTOBUF_LIMIT_BYTES = 2**31 - 2**26


# OpenCV's INTER_LINEAR on uint8 (the resize infer() runs, pipelines.cstm.warp_rgb) in fixed point: weights in
# 1/2048ths, a horizontal pass to int, a vertical pass that drops 4 + 16 bits before the sum and rounds the last
# 2, the same formula in its scalar and SIMD code (imgproc/src/resize.cpp, VResizeLinear for uchar). Reproducing it
# bit for bit keeps the photo the network sees identical to infer()'s; a float resize rounds 1 level off on ~12 %
# of the pixels, which moves a depth network's output by up to a few 1e-3 of the depth.
_CV_COEF_BITS = 11


def _cv_linear_taps(n_in: int, n_out: int, clamp_weights: bool) -> tuple[np.ndarray, ...]:
    """(index0, index1, weight0, weight1) per output pixel of OpenCV's linear resize along one axis.

    The source position is computed in float32 as OpenCV does; outside the image the index is clamped, and along x
    (clamp_weights) the weights too, as cv::resize does; along y it keeps them (the rows are clamped on fetch)."""
    # cv::resize gets the factor n_out / n_in (pipelines.cstm passes fx, fy) and inverts it, in double.
    pos = ((np.arange(n_out) + 0.5) * (1.0 / (n_out / n_in)) - 0.5).astype(np.float32)
    i0 = np.floor(pos).astype(np.int64)
    frac = (pos - i0).astype(np.float32)
    if clamp_weights:
        frac[(i0 < 0) | (i0 >= n_in - 1)] = 0.0
    w0 = np.rint((np.float32(1) - frac) * (1 << _CV_COEF_BITS)).astype(np.int32)
    w1 = np.rint(frac * (1 << _CV_COEF_BITS)).astype(np.int32)
    return np.clip(i0, 0, n_in - 1), np.clip(i0 + 1, 0, n_in - 1), w0, w1


class Uint8LinearResize(nn.Module):
    """Bx3xHxW integer levels 0-255 -> Bx3xhxw, equal to cv2.resize(..., fx=w/W, fy=h/H, INTER_LINEAR) on uint8."""

    def __init__(self, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> None:
        super().__init__()
        y0, y1, b0, b1 = _cv_linear_taps(in_hw[0], out_hw[0], clamp_weights=False)
        x0, x1, a0, a1 = _cv_linear_taps(in_hw[1], out_hw[1], clamp_weights=True)
        for name, value in dict(y0=y0, y1=y1, x0=x0, x1=x1).items():
            self.register_buffer(name, torch.from_numpy(value), persistent=False)
        # Weights shaped to broadcast over the rows (b: h x 1) and the columns (a: 1 x w) of a Bx3 batch.
        for name, value in dict(a0=a0[None], a1=a1[None], b0=b0[:, None], b1=b1[:, None]).items():
            self.register_buffer(name, torch.from_numpy(value), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.int32)
        rows = x.index_select(3, self.x0) * self.a0 + x.index_select(3, self.x1) * self.a1  # levels x 2^11
        top = torch.div(rows.index_select(2, self.y0), 16, rounding_mode="floor") * self.b0
        bottom = torch.div(rows.index_select(2, self.y1), 16, rounding_mode="floor") * self.b1
        total = torch.div(top, 65536, rounding_mode="floor") + torch.div(bottom, 65536, rounding_mode="floor")
        return torch.div(total + 2, 4, rounding_mode="floor").float()


class PhotoToDepth(nn.Module):
    """uint8 BxHxWx3 photos + float32 Bx4 intrinsics -> depth_m BxHxW for one photo size: the exported graph."""

    def __init__(self, net: nn.Module, hw: tuple[int, int], fit_hw: tuple[int, int], label_mode: bool) -> None:
        super().__init__()
        self.net = net.eval()
        self.hw = hw
        # The same fit as infer(): the largest size inside fit_hw, rounded to whole pixels, so sx != sy in general.
        self.resized_hw = resized_size(hw, min(fit_hw[0] / hw[0], fit_hw[1] / hw[1]))
        self.sy, self.sx = self.resized_hw[0] / hw[0], self.resized_hw[1] / hw[1]
        self.resize = Uint8LinearResize(hw, self.resized_hw) if self.resized_hw != hw else None
        self.label_mode = label_mode

    def network(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb Bx3xhxw 0-255 at the fitted size -> canonical depth Bx1xhxw."""
        return self.net(rgb)

    def finish(self, depth_m: torch.Tensor) -> torch.Tensor:
        """Any clamp the family's infer() applies to metres."""
        return depth_m

    def forward(self, image: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
        """image uint8 BxHxWx3, intrinsics float32 Bx4 (fx, fy, cx, cy) -> depth_m float32 BxHxW."""
        x = image.permute(0, 3, 1, 2)
        x = self.resize(x) if self.resize is not None else x.float()
        depth = self.network(x)
        if self.resize is not None:
            # Back to the photo's pixels: half-pixel bilinear, infer()'s cv2.warpAffine of the prediction.
            depth = F.interpolate(depth, size=self.hw, mode="bilinear", align_corners=False)
        if self.label_mode:
            f_px = (intrinsics[:, 0] * self.sx + intrinsics[:, 1] * self.sy) * 0.5  # mean focal of the fitted photo
            depth = depth * (f_px / F_CANONICAL_PX).view(-1, 1, 1, 1)
        return self.finish(depth[:, 0])


class Metric3DV1PhotoToDepth(PhotoToDepth):
    """Metric3D v1's infer(): the fitted photo centred on an input_hw canvas of the official padding colour."""

    def __init__(self, net: Metric3DV1, hw: tuple[int, int]) -> None:
        super().__init__(net, hw, net.config.input_hw, label_mode=True)
        self.register_buffer("pad_rgb", torch.tensor(PAD_RGB, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def network(self, rgb: torch.Tensor) -> torch.Tensor:
        (h, w), (net_h, net_w) = self.resized_hw, self.net.config.input_hw
        top, left = (net_h - h) // 2, (net_w - w) // 2
        # Zero padding around (rgb - pad colour), then the colour back: the canvas of infer(), exactly.
        canvas = F.pad(rgb - self.pad_rgb, (left, net_w - w - left, top, net_h - h - top)) + self.pad_rgb
        depth_c, _ = self.net.network((canvas - self.net.mean) / self.net.std)
        return depth_c[..., top : top + h, left : left + w].float()

    def finish(self, depth_m: torch.Tensor) -> torch.Tensor:
        return depth_m.clamp(0.0, MAX_DEPTH_M)


def photo_to_depth(net: nn.Module, hw: tuple[int, int]) -> PhotoToDepth:
    """The exportable photo -> metres module of a network (DepthNet in label or none mode, or Metric3D v1)."""
    if isinstance(net, Metric3DV1):
        return Metric3DV1PhotoToDepth(net, hw)
    if isinstance(net, DepthNet):
        if net.config.cstm == "image":
            raise ValueError(
                "CSTM image mode resizes each photo by its focal, a size known only at run time: "
                "not exportable as a fixed-size graph"
            )
        return PhotoToDepth(net, hw, net.config.infer_hw, label_mode=net.config.cstm == "label")
    raise TypeError(f"cannot export a {type(net).__name__}; exportable: DepthNet, Metric3DV1")


def fit_hw(net: nn.Module) -> tuple[int, int]:
    """The photo size a network's infer() fits photos into: the default export size."""
    return tuple(net.config.input_hw if isinstance(net, Metric3DV1) else net.config.infer_hw)


def export_onnx(net: nn.Module, hw: tuple[int, int], out: str, opset: int) -> None:
    """Write the photo -> metres graph of `net` for photos of size hw (any batch) to `out`."""
    module = photo_to_depth(net, hw).eval()
    # An example batch of 2: torch.export specialises a dimension of size 1 and would fix the batch at 1.
    example = (torch.zeros(2, *hw, 3, dtype=torch.uint8), torch.tensor([[500.0, 500.0, hw[1] / 2, hw[0] / 2]] * 2))
    batch = torch.export.Dim("batch", max=1024)
    weight_bytes = sum(p.numel() * p.element_size() for p in net.parameters())
    with torch.no_grad(), warnings.catch_warnings():
        # torch's exporter warns that the shared axis name "batch" is merged with itself: nothing to act on.
        warnings.filterwarnings("ignore", message="# The axis name: batch will not be used")
        torch.onnx.export(
            module,
            example,
            out,
            input_names=["image", "intrinsics"],
            output_names=["depth_m"],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes={"image": {0: batch}, "intrinsics": {0: batch}},
            external_data=weight_bytes > _PROTOBUF_LIMIT_BYTES,
            verbose=False,
        )
