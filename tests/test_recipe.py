"""The paper preset's training recipe, piece by piece: param groups, the lr schedule, clipping, the official SiLog,
float32 depth heads under autocast, and one step of Metric3D v1 (ConvNeXt-Tiny) through the loop's functions."""

from __future__ import annotations

import math

import pytest
import torch

from model import build_model, get_model_config, load_checkpoint, save_checkpoint
from model.losses import silog_metric3d
from model.net import load_state
from train.config import load_config
from train.loop import build_optimizer, build_scheduler, lr_at, train_step

pytestmark = pytest.mark.timeout(120)
PAPER = "metric3d_convnext_large"
NO_AUTOCAST = torch.autocast("cpu", enabled=False)
CPU = torch.device("cpu")


def _batch(b: int, h: int, w: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A train.loop batch of noise images with depth labels in [1, 10] canonical metres, all valid."""
    gen = torch.Generator().manual_seed(seed)
    return {
        "rgb": torch.randint(0, 256, (b, 3, h, w), generator=gen, dtype=torch.uint8),
        "depth_c": 1.0 + 9.0 * torch.rand((b, 1, h, w), generator=gen),
        "valid": torch.ones((b, 1, h, w), dtype=torch.bool),
        "k_px_c": torch.tensor([[1000.0, 1000.0, (w - 1) / 2, (h - 1) / 2]] * b),
    }


def test_paper_optimizer_has_the_official_encoder_decoder_groups() -> None:
    cfg = load_config(PAPER)
    net = build_model(get_model_config("metric3d_tiny"))
    opt = build_optimizer(net, cfg)
    groups = {g["name"]: g for g in opt.param_groups}
    assert list(groups) == ["encoder", "decoder"]
    # Official AdamW groups: encoder lr 1e-5, weight decay 1e-3; decoder lr 1e-4, weight decay 1e-2; eps 1e-6.
    assert (groups["encoder"]["lr"], groups["decoder"]["lr"]) == (pytest.approx(1e-5), 1e-4)
    assert groups["encoder"]["lr"] / groups["decoder"]["lr"] == pytest.approx(0.1)
    assert (groups["encoder"]["weight_decay"], groups["decoder"]["weight_decay"]) == (pytest.approx(1e-3), 0.01)
    assert groups["encoder"]["eps"] == groups["decoder"]["eps"] == 1e-6
    # Every parameter in exactly one group, the encoder's exactly those of net.encoder.
    assert {id(p) for p in groups["encoder"]["params"]} == {id(p) for p in net.encoder.parameters()}
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(net.parameters()))


def test_lr_schedule_warms_up_linearly_then_decays_to_min_lr() -> None:
    cfg = load_config(PAPER)  # lr 1e-4, min_lr 1e-6, 500 warm-up steps from 1e-6, poly 0.9 over 500k steps
    base, lo = 1e-4, 1e-6

    def decayed(step: int) -> float:
        return (base - lo) * (1 - step / 500_000) ** 0.9 + lo

    assert lr_at(0, base, cfg) == pytest.approx(1e-10, rel=1e-9)  # 1e-6 x the scheduled 1e-4
    assert lr_at(250, base, cfg) == pytest.approx(decayed(250) * (1e-6 + (1 - 1e-6) * 0.5), rel=1e-12)
    assert lr_at(499, base, cfg) == pytest.approx(decayed(499) * (1e-6 + (1 - 1e-6) * 499 / 500), rel=1e-12)
    assert lr_at(500, base, cfg) == pytest.approx(decayed(500), rel=1e-12)  # warm-up over
    assert lr_at(500_000, base, cfg) == pytest.approx(lo, rel=1e-12)
    ramp = [lr_at(s, base, cfg) for s in range(0, 501, 50)]
    assert all(a < b for a, b in zip(ramp, ramp[1:]))
    tail = [lr_at(s, base, cfg) for s in range(500, 500_001, 50_000)]
    assert all(a > b for a, b in zip(tail, tail[1:]))
    # The tiny preset's defaults keep the plain poly decay: no warm-up, no floor.
    tiny = load_config("tiny")
    assert lr_at(0, 5e-3, tiny) == 5e-3 and lr_at(150, 5e-3, tiny) == pytest.approx(5e-3 * 0.5**0.9, rel=1e-12)


def test_scheduler_applies_the_schedule_to_each_group_from_its_own_lr(tmp_path) -> None:
    cfg = load_config(PAPER, ["steps=10", "warmup_steps=4", "warmup_ratio=0.25", "min_lr=0"])
    net = torch.nn.ModuleDict({"encoder": torch.nn.Linear(2, 2), "head": torch.nn.Linear(2, 1)})
    opt = build_optimizer(net, cfg)
    sched = build_scheduler(opt, cfg)
    for step in range(10):
        encoder, decoder = (g["lr"] for g in opt.param_groups)
        assert (encoder, decoder) == (pytest.approx(lr_at(step, 1e-5, cfg)), pytest.approx(lr_at(step, 1e-4, cfg)))
        opt.step()
        sched.step()
    # Step 2 of a 4-step warm-up from 0.25: 0.25 + 0.75 * 2 / 4 = 0.625 of the poly lr (1 - 2 / 10) ** 0.9.
    assert lr_at(2, 1e-4, cfg) == pytest.approx(1e-4 * 0.625 * 0.8**0.9, rel=1e-12)
    # Both states survive a checkpoint read with weights_only, as a resumed run reads them.
    path = tmp_path / "state.pt"
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, path)
    state = load_state(str(path))
    opt2 = build_optimizer(net, cfg)
    sched2 = build_scheduler(opt2, cfg)
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    assert sched2.last_epoch == 10 and [g["name"] for g in opt2.param_groups] == ["encoder", "decoder"]


def test_clipping_bounds_the_gradient_norm() -> None:
    torch.manual_seed(0)
    net = build_model(get_model_config("metric3d_tiny"))
    cfg = load_config("tiny", ["grad_clip_norm=0.001"])
    opt = build_optimizer(net, cfg)
    gen = torch.Generator().manual_seed(0)
    metrics = train_step(net, opt, build_scheduler(opt, cfg), _batch(2, 32, 48), cfg, gen, NO_AUTOCAST, CPU)
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in net.parameters() if p.grad is not None]))
    assert metrics["grad_norm"] > 0.01  # the raw norm, reported before clipping, is far above the bound
    assert float(total) <= 0.001 * (1 + 1e-5)  # what AdamW stepped with
    # A non-finite gradient skips the update, as the official training code does.
    net.head[-1].weight.register_hook(lambda grad: grad * float("nan"))
    stem = net.encoder.stem_0.weight.detach().clone()
    metrics = train_step(net, opt, build_scheduler(opt, cfg), _batch(2, 32, 48), cfg, gen, NO_AUTOCAST, CPU)
    assert math.isnan(metrics["grad_norm"]) and torch.equal(net.encoder.stem_0.weight, stem)
    unclipped = load_config("tiny")
    opt = build_optimizer(net, unclipped)
    metrics = train_step(net, opt, build_scheduler(opt, unclipped), _batch(2, 32, 48), unclipped, gen, NO_AUTOCAST, CPU)
    assert "grad_norm" not in metrics  # clipping off: nothing computed


def test_official_silog_on_a_hand_computed_batch() -> None:
    # Images of 4 x 4 = MIN_PIXELS pixels: d = ln 2 everywhere in the first, 0 in the second; pooled over their 32
    # pixels mean d^2 = ln2^2 / 2 and mean d = ln2 / 2, so the loss is ln2^2 / 2 - 0.5 * ln2^2 / 4 = 3/8 ln2^2.
    # A third image with 8 valid pixels (too few) changes nothing, however wrong it is.
    label = torch.ones(3, 1, 4, 4)
    pred = torch.stack([2 * label[0], label[1], 50 * label[2]])
    valid = torch.ones(3, 1, 4, 4, dtype=torch.bool)
    valid[2, :, 2:] = False
    loss, metrics = silog_metric3d(pred, label, valid, torch.ones(3, 4), torch.Generator())
    assert float(loss) == pytest.approx(3 / 8 * math.log(2) ** 2, rel=1e-6)
    assert metrics["silog_metric3d/log_bias"] == pytest.approx(math.log(2) / 2, rel=1e-6)


def test_depth_heads_run_in_float32_under_bf16_autocast() -> None:
    unet = build_model(get_model_config("metric3d_tiny")).eval()
    v1 = build_model(get_model_config("metric3d_v1_convtiny", input_hw=(32, 32))).eval()
    layers = {
        "unet_before_head": unet.head[1],
        "unet_head": unet.head[-1],
        "v1_before_head": v1.decoder.bin_logits[0],
        "v1_bins": v1.decoder.bin_logits[-1],
        "v1_refine": v1.decoder.refine[-1],
    }
    seen = {}
    for name, layer in layers.items():
        layer.register_forward_hook(lambda _m, _i, out, name=name: seen.update({name: out.dtype}))
    rgb = _batch(1, 32, 32)["rgb"]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        depths = unet(rgb), v1(rgb)
    # Autocast is on (the convolutions before the heads run in bf16), the depth heads' last layers in float32.
    assert seen["unet_before_head"] == seen["v1_before_head"] == torch.bfloat16
    assert seen["unet_head"] == seen["v1_bins"] == seen["v1_refine"] == torch.float32
    assert all(d.dtype == torch.float32 and d.shape == (1, 1, 32, 32) for d in depths)


def test_metric3d_v1_convtiny_trains_one_step_and_round_trips(tmp_path) -> None:
    torch.manual_seed(0)
    cfg = load_config(PAPER, ["model_name=metric3d_v1_convtiny", "steps=10", "warmup_steps=2", "use_gpu=false"])
    net = build_model(get_model_config(cfg.model_name, cstm=cfg.cstm, input_hw=(32, 64)))
    opt = build_optimizer(net, cfg)
    sched = build_scheduler(opt, cfg)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    batch = _batch(2, 32, 64)
    metrics = train_step(net, opt, sched, batch, cfg, torch.Generator().manual_seed(0), NO_AUTOCAST, CPU)
    assert math.isfinite(metrics["loss"]) and metrics["loss"] > 0 and metrics["grad_norm"] > 0
    assert {"silog_metric3d", "vnl", "pwn", "rpnl"} <= set(metrics)
    # Warm-up step 1 of 2 from 1e-6: the next lr is about half the base, the encoder's a tenth of it.
    assert metrics["lr"] == pytest.approx(lr_at(1, 1e-4, cfg)) and metrics["lr_encoder"] == pytest.approx(
        lr_at(1, 1e-5, cfg)
    )
    after = net.state_dict()
    for part in ("encoder.stem_0.weight", "decoder.bin_logits.3.weight", "decoder.refine.7.weight"):
        assert not torch.equal(before[part], after[part]), part
    # Checkpoint as train.loop writes it; loads with weights_only (model.net.load_checkpoint) for evaluation ...
    path = str(tmp_path / "checkpoint.pt")
    save_checkpoint(path, net, {"step": 1, "train_datasets": ["nyu"]})
    model, state = load_checkpoint(path)
    assert type(model).__name__ == "Metric3DV1" and state["model_config"]["name"] == "metric3d_v1_convtiny"
    rgb = batch["rgb"][0].permute(1, 2, 0).numpy()
    depth_m = model.infer(rgb, (100.0, 100.0, 31.5, 15.5))["depth_m"]
    assert depth_m.shape == (32, 64) and (depth_m > 0).all()
    # ... and its weights go back into a fresh trainable network, as a resumed run loads them.
    resumed = build_model(get_model_config(cfg.model_name, input_hw=(32, 64)))
    resumed.load_state_dict(load_state(path)["model"])
    assert torch.equal(resumed.state_dict()["decoder.refine.7.weight"], after["decoder.refine.7.weight"])
