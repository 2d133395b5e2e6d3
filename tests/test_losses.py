"""Training losses: exact values on planes and known distortions, invariances, masking, gradients, weighting."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model.losses import LOSSES, MIN_PIXELS, RPNL_EPS, SILOG_VARIANCE_FOCUS, total_loss

H, W = 24, 32
K = (30.0, 32.0, 15.5, 11.5)  # fx, fy, cx, cy: a wide view, so a plane's z varies strongly across the image
NAMES = sorted(LOSSES)
SAMPLED = ("pwn", "rpnl", "vnl")  # the losses that draw from the generator and report a kept_frac
fast = settings(max_examples=25, deadline=None)


def _rays(h: int = H, w: int = W, k: tuple[float, ...] = K) -> torch.Tensor:
    """HxWx3 viewing rays (x right, y down, z = 1) through the pixel centres."""
    fx, fy, cx, cy = k
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return torch.stack(((u - cx) / fx, (v - cy) / fy, torch.ones_like(u)), -1)


def plane(normal: tuple[float, float, float], offset: float, h: int = H, w: int = W) -> torch.Tensor:
    """1x1xHxW z-depth of the plane normal . X = offset seen by the camera K: z = offset / (normal . ray)."""
    z = offset / (_rays(h, w) @ torch.tensor(normal))
    assert (z > 0).all()
    return z[None, None]


def roof(h: int = H, w: int = W) -> torch.Tensor:
    """1x1xHxW: the nearer of two planes tilted left and right, a ridge along the centre column: bent."""
    return torch.minimum(plane((0.4, 0.0, 1.0), 4.0, h, w), plane((-0.4, 0.0, 1.0), 4.0, h, w))


def k_px(b: int) -> torch.Tensor:
    return torch.tensor([K] * b)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def call(name: str, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, seed: int = 0):
    return LOSSES[name](pred, target, valid, k_px(pred.shape[0]), gen(seed))


def noisy_scene(seed: int, b: int = 2, h: int = H, w: int = W, valid_frac: float = 0.8):
    """A roof with 5% multiplicative noise, labels 0 where invalid (as the loader gives them)."""
    g = gen(seed)
    label = roof(h, w).expand(b, 1, h, w) * (1 + 0.05 * torch.randn(b, 1, h, w, generator=g))
    valid = torch.rand(b, 1, h, w, generator=g) < valid_frac
    return label * valid, valid, g


@pytest.mark.parametrize("name", NAMES)
def test_perfect_prediction_is_zero(name):
    label, valid, g = noisy_scene(0)
    pred = torch.where(valid, label, torch.rand(label.shape, generator=g) + 0.5)  # invalid pixels: anything
    loss, metrics = call(name, pred, label, valid)
    assert abs(loss.item()) <= 1e-6
    assert metrics[name] == loss.item()
    if name in SAMPLED:
        assert metrics[f"{name}/kept_frac"] > 0.2  # a zero from samples that were actually compared


def test_silog_known_value_for_a_scaled_prediction():
    # d = log 2 at every pixel: mean(d^2) - lambda mean(d)^2 = (1 - lambda) log(2)^2.
    label, valid, _ = noisy_scene(1)
    loss, metrics = call("silog", 2 * label, label, valid)
    assert loss.item() == pytest.approx(math.sqrt(1 - SILOG_VARIANCE_FOCUS) * math.log(2), abs=1e-6)
    assert metrics["silog/log_bias"] == pytest.approx(math.log(2), abs=1e-6)


@fast
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(1e-2, 1e2))
def test_silog_unchanged_when_prediction_and_label_scale_together(seed, scale):
    label, valid, g = noisy_scene(seed)
    pred = label * torch.exp(0.3 * torch.randn(label.shape, generator=g))
    base, base_metrics = call("silog", pred, label, valid)
    scaled, scaled_metrics = call("silog", scale * pred, scale * label, valid)
    assert base.item() > 0.1
    assert scaled.item() == pytest.approx(base.item(), rel=1e-5, abs=1e-6)
    assert scaled_metrics["silog/log_bias"] == pytest.approx(base_metrics["silog/log_bias"], rel=1e-4, abs=1e-6)


def _rough_label(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels uniform in [2, 12] m: every patch has a mean absolute deviation of about 2.5 m."""
    g = gen(seed)
    label = 2 + 10 * torch.rand(2, 1, H, W, generator=g)
    valid = torch.rand(2, 1, H, W, generator=g) < 0.9
    return label * valid, valid


@fast
@given(seed=st.integers(0, 2**31 - 1), a=st.floats(0.5, 4.0), b=st.floats(-1.0, 5.0))
def test_rpnl_unchanged_under_affine_prediction(seed, a, b):
    # a * label + b with one (a, b) is affine in every patch, so each patch normalises to the label's own
    # normalisation, up to the eps in the denominator: |a MAD / (a MAD + eps) - MAD / (MAD + eps)| <= eps / MAD.
    label, valid = _rough_label(seed)
    loss, metrics = call("rpnl", a * label + b, label, valid, seed)
    assert metrics["rpnl/kept_frac"] > 0.5
    assert loss.item() <= 2 * RPNL_EPS  # MAD >= 0.5 m in any patch of >= MIN_PIXELS of these labels


def test_rpnl_known_value_for_a_flat_prediction_and_positive_when_bent():
    label, valid = _rough_label(3)
    # A flat prediction normalises to 0; the label to (x - median) / (MAD + eps), whose mean |.| is
    # MAD / (MAD + eps): 1 to within eps / MAD.
    flat, metrics = call("rpnl", torch.full_like(label, 7.0), label, valid)
    assert metrics["rpnl/kept_frac"] > 0.5
    assert flat.item() == pytest.approx(1.0, abs=2 * RPNL_EPS)
    squared, _ = call("rpnl", label**2, label, valid)  # monotone but not affine: the shape within patches changes
    assert squared.item() > 0.02


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.7])
def test_vnl_zero_for_a_scaled_plane(scale):
    label = plane((0.3, -0.2, 1.0), 4.0).expand(2, 1, H, W)
    valid = torch.ones_like(label, dtype=torch.bool)
    loss, metrics = call("vnl", scale * label, label, valid)
    assert metrics["vnl/kept_frac"] > 0.2
    assert abs(loss.item()) <= 1e-6


def test_vnl_known_value_for_a_tilted_plane_and_positive_when_bent():
    normal_gt, normal_pred = torch.tensor([0.3, -0.2, 1.0]), torch.tensor([-0.2, 0.1, 1.0])
    label = plane(tuple(normal_gt.tolist()), 4.0).expand(2, 1, H, W)
    valid = torch.ones_like(label, dtype=torch.bool)
    # Every triangle of the prediction lies on the other plane, with the same winding in the image: each
    # triplet's unit normals are s * n_pred and s * n_gt with one sign s, so the loss is |n_pred - n_gt|_1.
    expected = (normal_pred / normal_pred.norm() - normal_gt / normal_gt.norm()).abs().sum().item()
    loss, metrics = call("vnl", plane(tuple(normal_pred.tolist()), 2.5).expand(2, 1, H, W), label, valid)
    assert metrics["vnl/kept_frac"] > 0.2
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    bent, _ = call("vnl", roof().expand(2, 1, H, W), label, valid)
    assert bent.item() > 0.05


def test_pwn_blind_to_a_global_tilt_but_positive_when_bent():
    label = plane((0.3, -0.2, 1.0), 4.0).expand(2, 1, H, W)
    valid = torch.ones_like(label, dtype=torch.bool)
    # One plane for another: every normal turns alike, so every pair keeps its cosine, 1.
    tilted, metrics = call("pwn", plane((-0.2, 0.1, 1.0), 2.5).expand(2, 1, H, W), label, valid)
    assert metrics["pwn/kept_frac"] > 0.9
    assert abs(tilted.item()) <= 1e-6
    # About half the pairs straddle the ridge: cos 0.72 instead of 1.
    bent, _ = call("pwn", roof().expand(2, 1, H, W), label, valid)
    assert 0.05 < bent.item() < 0.28


@fast
@given(seed=st.integers(0, 2**31 - 1), valid_frac=st.floats(0.0, 1.0), nan=st.booleans())
def test_invalid_pixels_change_nothing(seed, valid_frac, nan):
    label, valid, g = noisy_scene(seed, h=14, w=18, valid_frac=valid_frac)
    pred = label * torch.exp(0.2 * torch.randn(label.shape, generator=g)) + (~valid)  # positive everywhere
    junk = torch.full_like(pred, torch.nan) if nan else 1e3 * torch.rand(pred.shape, generator=g) + 1e-3
    other = torch.where(valid, pred, junk)
    for name in NAMES:
        loss, metrics = call(name, pred, label, valid, seed)
        other_loss, other_metrics = call(name, other, label, valid, seed)
        assert torch.equal(loss, other_loss), name
        assert metrics == other_metrics, name
    weights = {name: 1.0 for name in NAMES}
    assert torch.equal(
        total_loss(pred, label, valid, k_px(2), weights, gen(seed))[0],
        total_loss(other, label, valid, k_px(2), weights, gen(seed))[0],
    )


@pytest.mark.parametrize("name", NAMES)
def test_images_with_too_few_valid_pixels_are_skipped(name):
    label, valid, g = noisy_scene(4, b=1)
    pred = label * torch.exp(0.2 * torch.randn(label.shape, generator=g)) + (~valid)
    sparse = torch.zeros_like(valid)
    sparse[..., 0, : MIN_PIXELS // 2] = True  # a second image with too few valid pixels for any loss
    alone, _ = call(name, pred, label, valid)
    # The generator fills the first image's draws first, so the first image sees the same samples in both.
    both, _ = call(name, pred.expand(2, 1, H, W), label.expand(2, 1, H, W), torch.cat([valid, sparse]))
    assert alone.item() > 0.01
    assert both.item() == pytest.approx(alone.item(), rel=1e-6)  # sums over the batch may round differently
    empty = pred.expand(2, 1, H, W).clone().requires_grad_()
    loss, _ = call(name, empty, label.expand(2, 1, H, W), sparse.expand(2, 1, H, W))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(empty.grad, torch.zeros_like(empty))


@pytest.mark.parametrize("name", NAMES)
def test_gradients_finite_and_only_at_valid_pixels(name):
    label, valid, g = noisy_scene(5)
    grads = []
    for start in (label * torch.exp(0.2 * torch.randn(label.shape, generator=g)) + (~valid), label + (~valid)):
        pred = start.clone().requires_grad_()
        loss, _ = call(name, pred, label, valid)
        loss.backward()
        assert torch.isfinite(pred.grad).all()
        assert (pred.grad[~valid] == 0).all()
        grads.append(pred.grad)
    distorted, perfect = grads
    assert (distorted[valid] != 0).float().mean() > 0.1  # the loss does reach the prediction
    assert (perfect == 0).all()  # a perfect prediction is a minimum, where even sqrt and |.| give finite 0


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_computes_in_float32(name):
    label, valid, g = noisy_scene(6)
    pred = (label * torch.exp(0.2 * torch.randn(label.shape, generator=g)) + (~valid)).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, metrics = call(name, pred, label, valid)
    reference, reference_metrics = call(name, pred.float(), label, valid)
    assert loss.dtype == torch.float32
    assert torch.equal(loss, reference)
    assert metrics == reference_metrics


@pytest.mark.parametrize("name", SAMPLED)
def test_sampling_follows_the_generator(name):
    label, valid, g = noisy_scene(7)
    pred = label * torch.exp(0.2 * torch.randn(label.shape, generator=g)) + (~valid)
    assert torch.equal(call(name, pred, label, valid, 1)[0], call(name, pred, label, valid, 1)[0])
    assert call(name, pred, label, valid, 1)[0].item() != call(name, pred, label, valid, 2)[0].item()


def test_total_loss_sums_weighted_terms_in_order():
    label, valid, g = noisy_scene(8)
    pred = label * torch.exp(0.2 * torch.randn(label.shape, generator=g)) + (~valid)
    weights = {"vnl": 0.5, "silog": 2.0, "rpnl": 0.25, "pwn": 0.0}
    loss, metrics = total_loss(pred, label, valid, k_px(2), weights, gen(3))
    shared = gen(3)  # the terms draw in turn from the one generator
    terms = {name: LOSSES[name](pred, label, valid, k_px(2), shared)[0].item() for name in weights}
    assert loss.item() == pytest.approx(sum(w * terms[n] for n, w in weights.items()), rel=1e-6)
    assert all(terms[name] > 0 for name in weights)
    assert {name: metrics[name] for name in weights} == terms  # a zero weight is still reported


def test_total_loss_rejects_unknown_and_empty_weights():
    label, valid, _ = noisy_scene(9)
    with pytest.raises(KeyError, match="'ssi'.*valid: pwn, rpnl, silog, silog_metric3d, vnl"):
        total_loss(label, label, valid, k_px(2), {"silog": 1.0, "ssi": 1.0}, gen())
    with pytest.raises(ValueError, match="valid: pwn, rpnl, silog, silog_metric3d, vnl"):
        total_loss(label, label, valid, k_px(2), {}, gen())


def test_vnl_discards_triplets_collinear_in_the_label():
    # Valid pixels on one row of a plane backproject onto one 3-D line: every label triangle is degenerate,
    # so a prediction that bends that line still costs nothing.
    label = plane((0.3, -0.2, 1.0), 4.0).expand(2, 1, H, W)
    valid = torch.zeros_like(label, dtype=torch.bool)
    valid[..., 5, :] = True
    bent = label * (1 + 0.3 * torch.rand(label.shape, generator=gen(1)))
    loss, metrics = call("vnl", bent, label * valid, valid)
    assert metrics["vnl/kept_frac"] == 0.0
    assert loss.item() == 0.0
    full = torch.ones_like(valid)
    assert call("vnl", bent, label, full)[0].item() > 0.05  # the same distortion, seen off the line
