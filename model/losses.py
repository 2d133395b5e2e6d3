"""Training losses for canonical-space metric depth: SiLog, virtual normal, pair-wise normal, random proposal
normalisation, and a weighted sum of them looked up by name so that training reads the weights from config.

Every loss has one signature, fn(pred, target, valid, k_px, generator) -> (loss, metrics):
pred Bx1xHxW positive depth (canonical metres), target Bx1xHxW label (0 where invalid), valid Bx1xHxW bool,
k_px Bx4 (fx, fy, cx, cy) pixels with pixel centres at integer coordinates, generator a torch.Generator on any
device that draws every random sample (pixels, triplets, patches), so a seeded generator repeats a step exactly.
A pixel counts where valid is true and the label is positive and finite; nothing is read from any other pixel,
so predictions there (even NaN) change no loss, gradient or metric. Losses are computed in float32 with
autocast off, average over the batch's usable items (pixels, triplets, pairs, patches), and are exactly 0,
still attached to pred's graph, where no batch element has enough valid pixels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[[Tensor, Tensor, Tensor, Tensor, torch.Generator], tuple[Tensor, dict[str, float]]]

# Fewest valid pixels for an image (SiLog), an image's normal pixels (PWN, VNL) or a patch (RPNL) to count:
# below this a variance, median or normal sample says more about noise than the scene.
MIN_PIXELS = 16
SILOG_VARIANCE_FOCUS = 0.85  # lambda: 1 = fully scale invariant, 0 = plain log RMSE (Eigen et al. use 0.85)
# The official Metric3D training code's lambda (training/mono/model/losses/SiLog.py, variance_focus=0.5).
SILOG_METRIC3D_VARIANCE_FOCUS = 0.5
VNL_TRIPLETS = 2048  # random triplets per image
# A label triangle is kept when all its interior angles are at least this (near-collinear points give
# an unstable normal) ...
VNL_MIN_ANGLE_DEG = 30.0
# ... and all its edges are at least this fraction of its mean z (tiny triangles are dominated by label noise).
VNL_MIN_EDGE_REL = 0.01
PWN_PAIRS = 2048  # random pixel pairs per image
RPNL_PATCHES = 32  # random patches per image
RPNL_SIDE_FRACTION = (0.125, 0.5)  # patch height / image height and width / image width, drawn uniformly
# Added to the mean absolute deviation (canonical metres) before dividing: far below any sensor's
# resolution, so the affine invariance holds to ~eps / MAD, while a flat prediction (the constant-output
# head at initialisation) gets a gradient bounded by 1 / (eps * patch pixels) rather than an infinite one.
RPNL_EPS = 1e-4


def _float32_masked(fn: Callable[..., tuple[Tensor, dict[str, float]]]) -> LossFn:
    """Wrap a loss body so it sees float32 tensors with autocast off, and a mask of usable pixels.

    The body gets pred and target with every unusable pixel replaced by 1.0 (so logs, divisions and their
    gradients stay finite whatever the prediction holds there), the mask Bx1xHxW bool, k_px Bx4 float32."""

    @functools.wraps(fn)
    def loss(
        pred: Tensor, target: Tensor, valid: Tensor, k_px: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        with torch.autocast(pred.device.type, enabled=False):
            target = target.float()
            mask = valid.bool() & (target > 0) & torch.isfinite(target)
            pred = torch.where(mask, pred.float(), 1.0)
            target = torch.where(mask, target, 1.0)
            return fn(pred, target, mask, k_px.float(), generator)

    return loss


def _floats(values: dict[str, Tensor]) -> dict[str, float]:
    """0-d tensors -> Python floats with a single device sync."""
    return dict(zip(values, torch.stack([v.detach().float() for v in values.values()]).tolist()))


def _mean_over(err: Tensor, keep: Tensor) -> Tensor:
    """Mean of err over the kept entries; 0 (attached to the graph, zero gradient) when none is kept."""
    return (err * keep).sum() / keep.sum().clamp_min(1)


def _uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> Tensor:
    """U[0, 1) numbers drawn on the generator's own device (a CPU generator may drive a GPU loss)."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _sample_where(mask: Tensor, k: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """mask BxP bool -> (BxK flat indices drawn uniformly with replacement among each row's True entries,
    B counts of True entries). Rows with no True entry get arbitrary indices: callers drop them by count."""
    count = mask.sum(1)
    rank = (_uniform((mask.shape[0], k), generator, mask.device) * count[:, None]).long()
    rank = torch.minimum(rank, count[:, None] - 1).clamp_min(0)  # float rounding can reach count itself
    # The (rank + 1)-th True entry is the first position whose running count of Trues reaches rank + 1.
    idx = torch.searchsorted(mask.cumsum(1), rank + 1)
    return idx.clamp_max(mask.shape[1] - 1), count


def _points_at(depth: Tensor, idx: Tensor, k_px: Tensor, width: int) -> Tensor:
    """depth BxP (flattened HxW z-depth), idx Bx... flat pixel indices -> Bx...x3 camera points
    (x right, y down, z forward, depth units) by the pinhole model of model.net.backproject."""
    z = depth.gather(1, idx.flatten(1)).view(idx.shape)
    u, v = (idx % width).float(), (idx // width).float()
    fx, fy, cx, cy = k_px.view(k_px.shape[0], 4, *([1] * (idx.dim() - 1))).unbind(1)
    return torch.stack(((u - cx) * z / fx, (v - cy) * z / fy, z), dim=-1)


@_float32_masked
def silog(
    pred: Tensor, target: Tensor, mask: Tensor, k_px: Tensor, generator: torch.Generator
) -> tuple[Tensor, dict[str, float]]:
    """Scale-invariant log loss per image, sqrt(mean(d^2) - lambda * mean(d)^2) with d = log pred - log label
    over its valid pixels, averaged over images with at least MIN_PIXELS of them.

    Metrics: silog, and silog/log_bias = mean d (> 0: the prediction is too far on average), averaged alike."""
    d = torch.log(pred) - torch.log(target)  # 0 at unusable pixels, where both were set to 1
    n = mask.sum((1, 2, 3))
    mean_d = d.sum((1, 2, 3)) / n.clamp_min(1)
    var = (d * d).sum((1, 2, 3)) / n.clamp_min(1) - SILOG_VARIANCE_FOCUS * mean_d * mean_d
    # sqrt has an infinite slope at 0 (a perfect prediction) and rounding can make var slightly negative:
    # take the root only where var > 0, and feed the other branch a harmless 1 so its gradient stays finite.
    positive = var > 0
    per_image = torch.where(positive, torch.sqrt(torch.where(positive, var, 1.0)), 0.0)
    keep = n >= MIN_PIXELS
    loss = _mean_over(per_image, keep)
    return loss, _floats({"silog": loss, "silog/log_bias": _mean_over(mean_d, keep)})


@_float32_masked
def silog_metric3d(
    pred: Tensor, target: Tensor, mask: Tensor, k_px: Tensor, generator: torch.Generator
) -> tuple[Tensor, dict[str, float]]:
    """SiLog as the official Metric3D training code computes it: mean(d^2) - 0.5 * mean(d)^2, d = log pred - log
    label, pooled over the valid pixels of the whole batch (not per image) and without the square root. Unlike there,
    images with fewer than MIN_PIXELS valid pixels are left out, as in every loss here.

    Metrics: silog_metric3d, and silog_metric3d/log_bias = mean d over the pooled pixels."""
    d = torch.log(pred) - torch.log(target)  # 0 at unusable pixels, where both were set to 1
    keep = (mask.sum((1, 2, 3)) >= MIN_PIXELS).view(-1, 1, 1, 1)
    d = torch.where(keep, d, 0.0)
    n = (mask & keep).sum().clamp_min(1)
    mean_d = d.sum() / n
    loss = (d * d).sum() / n - SILOG_METRIC3D_VARIANCE_FOCUS * mean_d * mean_d
    return loss, _floats({"silog_metric3d": loss, "silog_metric3d/log_bias": mean_d})


def _triangle_normals(points: Tensor) -> tuple[Tensor, Tensor]:
    """points ...x3(vertex)x3(xyz) -> (unnormalised normals ...x3, whether each triangle is well formed:
    every interior angle >= VNL_MIN_ANGLE_DEG and every edge >= VNL_MIN_EDGE_REL * its mean z)."""
    p0, p1, p2 = points.unbind(-2)
    edges = torch.stack((p1 - p0, p2 - p0, p2 - p1), dim=-2)
    normal = torch.linalg.cross(edges[..., 0, :], edges[..., 1, :], dim=-1)
    length = edges.norm(dim=-1)
    # |normal| = |a||b| sin(angle between a and b) for any two edges a, b: every angle is at least the
    # threshold (so at most 180 - 2 * threshold) iff |normal| >= sin(threshold) * each product of two lengths.
    products = torch.stack(
        (length[..., 0] * length[..., 1], length[..., 0] * length[..., 2], length[..., 1] * length[..., 2]), -1
    )
    wide = normal.norm(dim=-1) >= math.sin(math.radians(VNL_MIN_ANGLE_DEG)) * products.amax(-1)
    large = length.amin(-1) >= VNL_MIN_EDGE_REL * points[..., 2].mean(-1)
    return normal, wide & large


@_float32_masked
def vnl(
    pred: Tensor, target: Tensor, mask: Tensor, k_px: Tensor, generator: torch.Generator
) -> tuple[Tensor, dict[str, float]]:
    """Virtual normal loss: VNL_TRIPLETS random triplets of valid pixels per image, backprojected with k_px
    from prediction and label; mean over the triplets well formed in the label (_triangle_normals) of the
    L1 distance (sum over x, y, z) between the two triangles' unit normals. Both normals share the vertex
    order, so their orientation agrees; invariant to a global scale of the prediction.

    Metrics: vnl, vnl/kept_frac (share of drawn triplets used)."""
    b, w = pred.shape[0], pred.shape[-1]
    idx, count = _sample_where(mask.flatten(1), 3 * VNL_TRIPLETS, generator)
    idx = idx.view(b, VNL_TRIPLETS, 3)
    normal_gt, keep = _triangle_normals(_points_at(target.flatten(1), idx, k_px, w))  # BxNx3, BxN
    normal_pred, _ = _triangle_normals(_points_at(pred.flatten(1), idx, k_px, w))
    keep = keep & (count >= MIN_PIXELS)[:, None]
    err = (F.normalize(normal_pred, dim=-1) - F.normalize(normal_gt, dim=-1)).abs().sum(-1)
    loss = _mean_over(err, keep)
    return loss, _floats({"vnl": loss, "vnl/kept_frac": keep.float().mean()})


def _pixel_normals(depth: Tensor, k_px: Tensor) -> Tensor:
    """depth Bx1xHxW -> B x (H-1)(W-1) x 3 unit normals, each from the cross product of the backprojected
    differences to the right and to the lower neighbour (the last row and column have no normal)."""
    b, _, h, w = depth.shape
    idx = torch.arange(h * w, device=depth.device).expand(b, -1)
    points = _points_at(depth.flatten(1), idx, k_px, w).view(b, h, w, 3)
    right = points[:, :-1, 1:] - points[:, :-1, :-1]
    down = points[:, 1:, :-1] - points[:, :-1, :-1]
    return F.normalize(torch.linalg.cross(right, down, dim=-1), dim=-1).flatten(1, 2)


@_float32_masked
def pwn(
    pred: Tensor, target: Tensor, mask: Tensor, k_px: Tensor, generator: torch.Generator
) -> tuple[Tensor, dict[str, float]]:
    """Pair-wise normal loss: per-pixel normals (_pixel_normals) where a pixel and its right and lower
    neighbours are valid; PWN_PAIRS random pairs of such pixels per image; mean over pairs of distinct
    pixels of |cos(n_i, n_j) of the prediction - cos(n_i, n_j) of the label|. Images with fewer than
    MIN_PIXELS normal pixels are skipped.

    Metrics: pwn, pwn/kept_frac (share of drawn pairs used)."""
    m = mask[:, 0]
    has_normal = m[:, :-1, :-1] & m[:, :-1, 1:] & m[:, 1:, :-1]  # Bx(H-1)x(W-1)
    idx, count = _sample_where(has_normal.flatten(1), 2 * PWN_PAIRS, generator)
    idx = idx.view(-1, PWN_PAIRS, 2)

    def pair_cosines(depth: Tensor) -> Tensor:
        normals = _pixel_normals(depth, k_px)  # BxQx3
        pairs = normals.gather(1, idx.flatten(1)[..., None].expand(-1, -1, 3)).view(*idx.shape, 3)
        return (pairs[:, :, 0] * pairs[:, :, 1]).sum(-1)  # BxPAIRS

    keep = (idx[..., 0] != idx[..., 1]) & (count >= MIN_PIXELS)[:, None]
    loss = _mean_over((pair_cosines(pred) - pair_cosines(target)).abs(), keep)
    return loss, _floats({"pwn": loss, "pwn/kept_frac": keep.float().mean()})


def _normalise_patch(x: Tensor, inside: Tensor, count: Tensor) -> Tensor:
    """x BxQ, inside BxQ bool, count B -> (x - median) / (mean |x - median| + RPNL_EPS), both statistics
    over each row's inside entries (lower median for even counts: differentiable, routes to one pixel)."""
    median = torch.where(inside, x, torch.nan).nanmedian(dim=1).values
    median = torch.where(count > 0, median, 0.0)[:, None]  # an empty row's median is NaN
    centred = x - median
    mad = torch.where(inside, centred.abs(), 0.0).sum(1, keepdim=True) / count.clamp_min(1)[:, None]
    return centred / (mad + RPNL_EPS)


@_float32_masked
def rpnl(
    pred: Tensor, target: Tensor, mask: Tensor, k_px: Tensor, generator: torch.Generator
) -> tuple[Tensor, dict[str, float]]:
    """Random proposal normalisation loss: RPNL_PATCHES random boxes per image (sides uniform fractions
    RPNL_SIDE_FRACTION of the image's, positions uniform); prediction and label each normalised by their own
    median and mean absolute deviation over the box's valid pixels (_normalise_patch); mean over boxes with
    at least MIN_PIXELS valid pixels of the mean L1 between the two. Invariant to a positive scale and any
    shift of the prediction within each box (to ~RPNL_EPS / MAD).

    Metrics: rpnl, rpnl/kept_frac (share of drawn boxes used)."""
    b, _, h, w = pred.shape
    r = torch.rand((b, RPNL_PATCHES, 4), generator=generator, device=generator.device)
    lo, hi = RPNL_SIDE_FRACTION
    sides = ((lo + (hi - lo) * r[..., :2]) * torch.tensor([h, w], device=r.device)).round().long().clamp_min(1)
    starts = (r[..., 2:] * (torch.tensor([h, w], device=r.device) - sides + 1)).long()  # box top-left, BxMx2
    # Each box is read through a window the size of the largest box m in the batch, so the median sorts
    # only that many pixels per image; the window sizes are known on the generator's side without a sync.
    window = sides.amax(0).tolist()  # Mx2
    sides, starts = sides.to(pred.device), starts.to(pred.device)
    rows_all, cols_all = torch.arange(h, device=pred.device), torch.arange(w, device=pred.device)
    batch = torch.arange(b, device=pred.device)[:, None, None]
    pred2d, target2d, mask2d = pred[:, 0], target[:, 0], mask[:, 0]
    errs, keeps = [], []
    for m, (wh, ww) in enumerate(window):
        top = starts[:, m, 0].clamp_max(h - wh)[:, None]  # window top-left: inside the image, over the box
        left = starts[:, m, 1].clamp_max(w - ww)[:, None]
        rows, cols = top + rows_all[:wh], left + cols_all[:ww]  # Bxwh, Bxww
        in_rows = (rows >= starts[:, m, :1]) & (rows < starts[:, m, :1] + sides[:, m, :1])
        in_cols = (cols >= starts[:, m, 1:]) & (cols < starts[:, m, 1:] + sides[:, m, 1:])
        at = (batch, rows[:, :, None], cols[:, None, :])
        inside = (mask2d[at] & in_rows[:, :, None] & in_cols[:, None, :]).flatten(1)
        count = inside.sum(1)
        diff = _normalise_patch(pred2d[at].flatten(1), inside, count) - _normalise_patch(
            target2d[at].flatten(1), inside, count
        )
        errs.append(torch.where(inside, diff.abs(), 0.0).sum(1) / count.clamp_min(1))
        keeps.append(count >= MIN_PIXELS)
    keep = torch.stack(keeps, 1)
    loss = _mean_over(torch.stack(errs, 1), keep)
    return loss, _floats({"rpnl": loss, "rpnl/kept_frac": keep.float().mean()})


LOSSES: dict[str, LossFn] = {"silog": silog, "silog_metric3d": silog_metric3d, "vnl": vnl, "pwn": pwn, "rpnl": rpnl}


def total_loss(
    pred: Tensor,
    batch_target: Tensor,
    valid: Tensor,
    k_px: Tensor,
    weights: dict[str, float],
    generator: torch.Generator,
) -> tuple[Tensor, dict[str, float]]:
    """sum of weight * LOSSES[name](...) over weights, evaluated in the dict's order with the one generator.

    A weight of 0 still computes and reports its term (monitoring without training on it). Metrics: every
    term's metrics (its value under its own name). Raises KeyError naming the valid losses on an unknown name."""
    unknown = sorted(set(weights) - set(LOSSES))
    if unknown:
        raise KeyError(f"unknown loss {', '.join(map(repr, unknown))}; valid: {', '.join(sorted(LOSSES))}")
    if not weights:
        raise ValueError(f"no loss terms given; valid: {', '.join(sorted(LOSSES))}")
    total = pred.new_zeros((), dtype=torch.float32)
    metrics: dict[str, float] = {}
    for name, weight in weights.items():
        term, term_metrics = LOSSES[name](pred, batch_target, valid, k_px, generator)
        total = total + weight * term
        metrics.update(term_metrics)
    return total, metrics
