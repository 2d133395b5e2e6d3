"""The per-worker training loop (one Ray Train worker = one DDP rank). Fits on a screen on purpose.

Data: each rank loads its own contiguous slice of every global batch from the store (pipelines), so the
global batch is the same for any number of workers and resuming at (epoch, step) is exact. A corrupt sample
is replaced by the loader; every step gathers the ranks' finds, so all ranks hold the same set and stop together
once it passes max_bad_samples (the driver then raises, naming them).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from typing import Any

import torch
import torch.distributed as dist

from model import build_model, get_model_config, save_checkpoint
from model.losses import total_loss
from model.net import load_state
from pipelines import iter_torch, plan_epoch, training_batches, training_dataset
from store import open_store
from train.config import TrainConfig

CHECKPOINT_FILE = "checkpoint.pt"
BAD_SAMPLES_FILE = "bad_samples.json"  # beside the checkpoint and as an MLflow artifact: [{sample_id, reason}]


def lr_at(step: int, base_lr: float, cfg: TrainConfig) -> float:
    """The lr of a param group whose base lr is `base_lr` at optimiser step `step` (0-based): polynomial decay from
    base_lr to cfg.min_lr over cfg.steps, times a linear ramp from cfg.warmup_ratio to 1 over cfg.warmup_steps."""
    lr = (base_lr - cfg.min_lr) * max(0.0, 1.0 - step / cfg.steps) ** cfg.poly_power + cfg.min_lr
    if step < cfg.warmup_steps:
        lr *= cfg.warmup_ratio + (1.0 - cfg.warmup_ratio) * step / cfg.warmup_steps
    return lr


def build_optimizer(net: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with two named param groups: `encoder` (parameters under net.encoder, lr and weight decay scaled by
    cfg.encoder_lr_scale and cfg.encoder_weight_decay_scale) and `decoder` (everything else, cfg.lr)."""
    encoder, decoder = [], []
    for name, param in net.named_parameters():
        (encoder if name.startswith("encoder.") else decoder).append(param)
    groups = [
        {"name": "encoder", "params": encoder, "lr": cfg.lr * cfg.encoder_lr_scale},
        {"name": "decoder", "params": decoder, "lr": cfg.lr},
    ]
    groups[0]["weight_decay"] = cfg.weight_decay * cfg.encoder_weight_decay_scale
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.adam_eps)


def build_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Every group follows lr_at from its own base lr (LambdaLR multiplies the base lr by the returned factor)."""
    factors = [lambda step, base=g["lr"]: lr_at(step, base, cfg) / base for g in opt.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(opt, factors)


def train_step(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    batch: dict[str, Any],
    cfg: TrainConfig,
    generator: torch.Generator,
    autocast: torch.autocast,
    device: torch.device,
) -> dict[str, float]:
    """One step on one batch: forward under autocast, losses in float32, backward, gradient clipping, AdamW and
    schedule steps (with clipping on, a non-finite gradient norm skips the AdamW step). Returns loss, every loss
    term's metrics, grad_norm (before clipping, when clipping) and the lrs of the next step (lr: the decoder's,
    lr_encoder)."""
    rgb, depth, valid, k_px = (batch[k].to(device, non_blocking=True) for k in ("rgb", "depth_c", "valid", "k_px_c"))
    with autocast:
        pred = model(rgb)
    loss, metrics = total_loss(pred.float(), depth, valid, k_px, dict(cfg.losses), generator)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip_norm > 0:
        metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm))
    # As the official training code: a non-finite gradient skips the update (every rank sees the same norm).
    if math.isfinite(metrics.get("grad_norm", 0.0)):
        opt.step()
    sched.step()
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    return {"loss": loss.item(), **metrics, "lr": lrs["decoder"], "lr_encoder": lrs["encoder"]}


def _global(ids: list[str], bad: list[tuple[str, str]]) -> tuple[list[str], list[tuple[str, str]]]:
    """Every rank's sample ids of this step in rank order (the global batch), and every rank's corrupt samples."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return ids, bad
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, (ids, bad))
    return [i for part, _ in gathered for i in part], [b for _, part in gathered for b in part]


def bad_sample_records(bad: dict[str, str]) -> list[dict[str, str]]:
    """sample id -> reason as the JSON list of BAD_SAMPLES_FILE, sorted by id."""
    return [{"sample_id": sample_id, "reason": reason} for sample_id, reason in sorted(bad.items())]


def read_bad_samples(directory: str) -> dict[str, str]:
    """The corrupt samples a checkpoint directory records (sample id -> reason)."""
    path = os.path.join(directory, BAD_SAMPLES_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {r["sample_id"]: r["reason"] for r in json.load(f)}


def _batches(cfg: TrainConfig, store, epoch: int, start: int, rank: int, world: int):
    kw = {
        "mix": cfg.mix(),
        "seed": cfg.seed,
        "epoch": epoch,
        "batch_size": cfg.batch_size,
        "rank": rank,
        "world_size": world,
        "start_step": start,
        "cstm": cfg.cstm,
        "crop_hw": cfg.crop_hw,
        "ratio_range": cfg.ratio_range,
    }
    if cfg.loader == "ray_data":
        import ray.data

        # One loader task at a time per rank, holding the data_cpus_per_worker CPUs train.run reserved beside the
        # Train workers' own; the rank's executor plans within those (and asks an autoscaler for no more).
        options = ray.data.DataContext.get_current().execution_options
        options.resource_limits = options.resource_limits.copy(cpu=cfg.data_cpus_per_worker)
        ds = training_dataset(store, **kw, num_cpus=cfg.data_cpus_per_worker, concurrency=1)
        return iter_torch(ds, cfg.batch_size // world)
    return training_batches(store, **kw)


def train_loop(loop_config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    from infra.quiet import quiet_worker

    quiet_worker()
    cfg = TrainConfig.from_dict(loop_config["train"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(cfg.seed)
    model_cfg = get_model_config(cfg.model_name, cstm=cfg.cstm, pretrained_path=cfg.pretrained_path or None)
    # Gradients as views of DDP's buckets: no "grad strides do not match bucket view strides" copy (and
    # warning) for convolution weights whose gradients come out in another memory layout.
    model = ray.train.torch.prepare_model(
        build_model(model_cfg), parallel_strategy_kwargs={"gradient_as_bucket_view": True}
    )
    net = model.module if hasattr(model, "module") else model
    device = ray.train.torch.get_device()
    opt = build_optimizer(net, cfg)
    sched = build_scheduler(opt, cfg)
    step, digest, bad = 0, "", {}
    if checkpoint := ray.train.get_checkpoint():
        with checkpoint.as_directory() as d:
            state = load_state(os.path.join(d, CHECKPOINT_FILE), map_location=device)
            bad = read_bad_samples(d)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, digest = state["step"], state["samples_digest"]
    store = open_store(loop_config["store_url"], loop_config["storage_options"], version=loop_config["store_version"])
    steps_per_epoch = plan_epoch(store, cfg.mix(), cfg.seed, 0, cfg.batch_size).steps
    tracker = _Tracker(loop_config, rank)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.use_gpu and cfg.bf16)
    wait = compute = 0.0
    since = 0  # steps since the last log
    while step < cfg.steps:
        epoch, start = divmod(step, steps_per_epoch)
        t_ready = time.perf_counter()
        for batch in _batches(cfg, store, epoch, start, rank, world):
            t_data = time.perf_counter()
            if step == cfg.fail_at_step and rank == world - 1 and _first_failure(loop_config):
                raise RuntimeError(f"fault drill: rank {rank} fails at step {step}")
            gen = torch.Generator().manual_seed((cfg.seed * 1_000_003 + step) * 1031 + rank)  # loss sampling
            metrics = train_step(model, opt, sched, batch, cfg, gen, autocast, device)
            ids, found = _global(batch["sample_id"], batch["bad_samples"])
            digest = hashlib.blake2b((digest + "\n".join(ids)).encode(), digest_size=16).hexdigest()
            step += 1
            if new := {sample_id: reason for sample_id, reason in found if sample_id not in bad}:
                bad.update(new)
                tracker.log_bad_samples(bad, step)
            metrics["bad_samples"] = len(bad)
            stop = len(bad) > cfg.max_bad_samples  # the same on every rank: every step gathers the finds
            t_done = time.perf_counter()
            wait, compute, since = wait + (t_data - t_ready), compute + (t_done - t_data), since + 1
            t_ready = t_done
            if step % cfg.log_every == 0 or step in (1, cfg.steps):  # step 1: the starting loss
                metrics["samples_per_s"] = since * cfg.batch_size / max(wait + compute, 1e-9)
                metrics["data_wait_share"] = wait / max(wait + compute, 1e-9)
                tracker.log(metrics, step)
                wait = compute = 0.0
                since = 0
            if step % cfg.checkpoint_every == 0 or step == cfg.steps or stop:
                _report(net, opt, sched, step, digest, loop_config, metrics, rank, bad)
            if stop:  # not an exception: Ray Train would restart the workers, to meet the same samples again
                return
            if step >= cfg.steps or step % steps_per_epoch == 0:
                break


def _report(
    net, opt, sched, step: int, digest: str, loop_config: dict, metrics: dict, rank: int, bad: dict[str, str]
) -> None:
    import ray.train

    metrics = {**metrics, "step": step, "samples_digest": digest}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            extra = {
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "step": step,
                "samples_digest": digest,
                "train_config": loop_config["train"],
                # The lineage travels with the weights: evaluating a bare checkpoint file still knows
                # which datasets were seen in training.
                "train_datasets": loop_config["train_datasets"],
                # ... and the catalog version it trained on, so an evaluation can compare scenes with its rows.
                "store_uri": loop_config["store_url"],
                "store_version": loop_config["store_version"],
            }
            save_checkpoint(os.path.join(tmp, CHECKPOINT_FILE), net, extra)
            with open(os.path.join(tmp, BAD_SAMPLES_FILE), "w") as f:
                json.dump(bad_sample_records(bad), f)
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)  # every rank reports, rank 0 with the checkpoint


def _first_failure(loop_config: dict[str, Any]) -> bool:
    """True once per run: the drill leaves a marker so the restarted workers go on."""
    marker = os.path.join(loop_config["drill_dir"], "failed-once")
    if os.path.exists(marker):
        return False
    os.makedirs(loop_config["drill_dir"], exist_ok=True)
    open(marker, "w").close()
    return True


class _Tracker:
    """Rank 0 logs per-step metrics to the driver's MLflow run (the driver is idle during fit)."""

    def __init__(self, loop_config: dict[str, Any], rank: int) -> None:
        self.run_id = loop_config.get("mlflow_run_id") if rank == 0 else None
        if self.run_id:
            from mlflow import MlflowClient

            self.client = MlflowClient(loop_config["mlflow_tracking_uri"])

    def log(self, metrics: dict[str, float], step: int) -> None:
        if not self.run_id:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_bad_samples(self, bad: dict[str, str], step: int) -> None:
        """The count as a metric and the list as an artifact, as soon as a new corrupt sample is met."""
        if not self.run_id:
            return
        self.log({"bad_samples": len(bad)}, step)
        self.client.log_dict(self.run_id, bad_sample_records(bad), BAD_SAMPLES_FILE)
