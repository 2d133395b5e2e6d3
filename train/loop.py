"""The per-worker training loop (one Ray Train worker = one DDP rank). Fits on a screen on purpose.

Data: each rank loads its own contiguous slice of every global batch from the store (pipelines), so the
global batch is the same for any number of workers and resuming at (epoch, step) is exact.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from typing import Any

import torch
import torch.distributed as dist

from model import build_model, get_model_config, save_checkpoint
from model.losses import total_loss
from pipelines import iter_torch, plan_epoch, training_batches, training_dataset
from store import open_store
from train.config import TrainConfig

CHECKPOINT_FILE = "checkpoint.pt"


def _poly(cfg: TrainConfig):
    return lambda step: max(0.0, 1.0 - step / cfg.steps) ** cfg.poly_power


def _global_ids(ids: list[str]) -> list[str]:
    """Every rank's sample ids of this step, in rank order (the global batch)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return ids
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, ids)
    return [i for part in gathered for i in part]


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
        return iter_torch(training_dataset(store, **kw), cfg.batch_size // world)
    return training_batches(store, **kw)


def train_loop(loop_config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    cfg = TrainConfig.from_dict(loop_config["train"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(cfg.seed)
    model_cfg = get_model_config(cfg.model_name, cstm=cfg.cstm, pretrained_path=cfg.pretrained_path or None)
    model = ray.train.torch.prepare_model(build_model(model_cfg))
    net = model.module if hasattr(model, "module") else model
    device = ray.train.torch.get_device()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _poly(cfg))
    step, digest = 0, ""
    if checkpoint := ray.train.get_checkpoint():
        with checkpoint.as_directory() as d:
            state = torch.load(os.path.join(d, CHECKPOINT_FILE), map_location=device, weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, digest = state["step"], state["samples_digest"]
    store = open_store(loop_config["store_url"], loop_config["storage_options"], version=loop_config["store_version"])
    steps_per_epoch = plan_epoch(store, cfg.mix(), cfg.seed, 0, cfg.batch_size).steps
    tracker = _Tracker(loop_config, rank)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.use_gpu and cfg.bf16)
    weights = dict(cfg.losses)
    wait = compute = 0.0
    since = 0  # steps since the last log
    while step < cfg.steps:
        epoch, start = divmod(step, steps_per_epoch)
        t_ready = time.perf_counter()
        for batch in _batches(cfg, store, epoch, start, rank, world):
            t_data = time.perf_counter()
            if step == cfg.fail_at_step and rank == world - 1 and _first_failure(loop_config):
                raise RuntimeError(f"fault drill: rank {rank} fails at step {step}")
            rgb, depth, valid = (batch[k].to(device, non_blocking=True) for k in ("rgb", "depth_c", "valid"))
            gen = torch.Generator().manual_seed((cfg.seed * 1_000_003 + step) * 1031 + rank)  # loss sampling
            with autocast:
                pred = model(rgb)
            loss, metrics = total_loss(pred.float(), depth, valid, batch["k_px_c"].to(device), weights, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            ids = _global_ids(batch["sample_id"])
            digest = hashlib.blake2b((digest + "\n".join(ids)).encode(), digest_size=16).hexdigest()
            step += 1
            t_done = time.perf_counter()
            wait, compute, since = wait + (t_data - t_ready), compute + (t_done - t_data), since + 1
            t_ready = t_done
            metrics = {"loss": float(loss), **metrics, "lr": sched.get_last_lr()[0]}
            if step % cfg.log_every == 0 or step in (1, cfg.steps):  # step 1: the starting loss
                metrics["samples_per_s"] = since * cfg.batch_size / max(wait + compute, 1e-9)
                metrics["data_wait_share"] = wait / max(wait + compute, 1e-9)
                tracker.log(metrics, step)
                wait = compute = 0.0
                since = 0
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                _report(net, opt, sched, step, digest, loop_config, metrics, rank)
            if step >= cfg.steps or step % steps_per_epoch == 0:
                break


def _report(net, opt, sched, step: int, digest: str, loop_config: dict, metrics: dict, rank: int) -> None:
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
            }
            save_checkpoint(os.path.join(tmp, CHECKPOINT_FILE), net, extra)
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
