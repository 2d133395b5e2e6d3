"""The training config: one frozen dataclass, presets as TOML files, `--set key=value` for any field.

A preset is a TOML file of field = value pairs (train/presets/<name>.toml, or any path); fields it leaves
out keep the dataclass defaults. There is no inheritance between presets: what a file says is what runs.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

PRESETS_DIR = Path(__file__).parent / "presets"
LOADERS = ("inprocess", "ray_data")


@dataclass(frozen=True)
class TrainConfig:
    model_name: str = "metric3d_v1_convlarge"  # model registry name (model.config.MODELS)
    cstm: str = "label"  # label | image | none (the ablation switch)
    steps: int = 500_000  # optimiser steps (global batches)
    batch_size: int = 192  # global batch; each of num_workers ranks takes batch_size / num_workers
    crop_hw: tuple[int, int] = (512, 960)  # training crop, pixels (height, width)
    ratio_range: tuple[float, float] = (0.9, 1.4)  # random resize around the canonical scale
    lr: float = 1e-4  # AdamW, the decoder's (every parameter outside `encoder.`)
    encoder_lr_scale: float = 1.0  # the encoder's lr = lr * encoder_lr_scale
    weight_decay: float = 0.01  # AdamW, the decoder's
    encoder_weight_decay_scale: float = 1.0  # the encoder's weight decay = weight_decay * encoder_weight_decay_scale
    adam_eps: float = 1e-8
    poly_power: float = 0.9  # each group: (its lr - min_lr) * (1 - step / steps) ** poly_power + min_lr
    min_lr: float = 0.0  # absolute, the same for both groups; at most the encoder's lr
    warmup_steps: int = 0  # linear warm-up over the first warmup_steps steps (0 = none) ...
    warmup_ratio: float = 1e-6  # ... starting at warmup_ratio times the scheduled lr
    grad_clip_norm: float = 0.0  # clip the global L2 norm of all gradients to this before each step (0 = off)
    seed: int = 0
    datasets: tuple[str, ...] = ()  # store dataset names; empty = every train-split dataset
    mix_weights: tuple[float, ...] = ()  # one per dataset; empty = equal shares whatever the sizes
    losses: tuple[tuple[str, float], ...] = (("silog", 1.0), ("vnl", 0.5), ("rpnl", 0.5), ("pwn", 0.2))
    num_workers: int = 2  # Ray Train workers (DDP ranks)
    cpus_per_worker: float = 1.0  # logical Ray CPUs each Ray Train worker reserves (0.5: two workers share one)
    # loader = ray_data: logical Ray CPUs each rank's Ray Data pipeline (its loader tasks) reserves, on top of
    # cpus_per_worker; train.run reserves num_workers x (cpus_per_worker + data_cpus_per_worker) in all
    data_cpus_per_worker: float = 1.0
    use_gpu: bool = False
    bf16: bool = True  # autocast on GPU
    loader: str = "inprocess"  # inprocess: each rank loads its slice | ray_data: per-rank Ray Data pipelines
    checkpoint_every: int = 1000
    log_every: int = 10
    preview_count: int = 4  # depth previews logged to MLflow at the end
    experiment: str = "metric-depth"
    registered_model: str = "metric-depth"
    storage_path: str = "runs"  # where Ray Train keeps checkpoints (local path or s3://...)
    max_failures: int = 2  # worker-group restarts from the last checkpoint
    pretrained_path: str = ""  # local ImageNet weights for the encoder (nothing is fetched from a hub)
    fail_at_step: int = -1  # fault drill: the last rank raises once at this step (tests recovery)
    max_bad_samples: int = 10  # corrupt samples skipped (and replaced) before the run stops, naming them

    def __post_init__(self) -> None:
        if not (self.lr > 0 and self.encoder_lr_scale > 0):
            raise ValueError(f"lr and encoder_lr_scale must be > 0; got {self.lr}, {self.encoder_lr_scale}")
        if not 0.0 <= self.min_lr <= self.lr * self.encoder_lr_scale:
            raise ValueError(f"min_lr {self.min_lr} must be in [0, the encoder's lr {self.lr * self.encoder_lr_scale}]")
        if self.warmup_steps < 0 or not 0.0 < self.warmup_ratio <= 1.0:
            raise ValueError(
                f"need warmup_steps >= 0 and 0 < warmup_ratio <= 1; got {self.warmup_steps}, {self.warmup_ratio}"
            )
        if self.grad_clip_norm < 0:
            raise ValueError(f"grad_clip_norm must be >= 0 (0 = no clipping); got {self.grad_clip_norm}")
        if self.loader not in LOADERS:
            raise ValueError(f"unknown loader {self.loader!r}; valid: {', '.join(LOADERS)}")
        if not (self.cpus_per_worker >= 0 and self.data_cpus_per_worker > 0):
            raise ValueError(
                f"need cpus_per_worker >= 0 and data_cpus_per_worker > 0; "
                f"got {self.cpus_per_worker}, {self.data_cpus_per_worker}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise KeyError(f"unknown config fields {unknown}; valid: {', '.join(known)}")
        hints = typing.get_type_hints(cls)
        return cls(**{k: _coerce(hints[k], v, k) for k, v in values.items()})

    def mix(self) -> dict[str, float] | None:
        if not self.datasets:
            return None
        if self.mix_weights and len(self.mix_weights) != len(self.datasets):
            raise ValueError(f"mix_weights has {len(self.mix_weights)} values for {len(self.datasets)} datasets")
        return dict(zip(self.datasets, self.mix_weights or [1.0] * len(self.datasets)))


def _coerce(hint: Any, value: Any, name: str) -> Any:
    try:
        return _convert(hint, value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config field {name}: cannot read {value!r} as {hint} ({exc})") from None


def _convert(hint: Any, value: Any) -> Any:
    """TOML values and `--set` strings into the field's type: "256,352" -> (256, 352),
    "silog:1,vnl:0.5" -> (("silog", 1.0), ("vnl", 0.5)), a TOML table -> its (key, value) pairs."""
    if hint is bool:
        if isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError("expected true or false")
            return value.lower() in ("true", "1")
        return bool(value)
    if hint in (int, float, str):
        return hint(value)
    if typing.get_origin(hint) is not tuple:
        raise TypeError(f"unsupported field type {hint}")
    args = typing.get_args(hint)
    if isinstance(value, dict):
        value = list(value.items())
    if args[-1] is Ellipsis:
        items = [v for v in value.split(",") if v] if isinstance(value, str) else value
        return tuple(_convert(args[0], v) for v in items)
    if isinstance(value, str):
        value = value.split(":" if ":" in value else ",")
    if len(value) != len(args):
        raise ValueError(f"needs {len(args)} values")
    return tuple(_convert(a, v) for a, v in zip(args, value))


def load_config(name_or_file: str, overrides: list[str] | None = None) -> TrainConfig:
    """A preset name (train/presets/NAME.toml) or a TOML path, then `key=value` overrides."""
    path = Path(name_or_file)
    if not path.suffix:
        path = PRESETS_DIR / f"{name_or_file}.toml"
    if not path.exists():
        names = sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))
        raise FileNotFoundError(f"no config {name_or_file!r}: give a TOML file or a preset: {', '.join(names)}")
    values: dict[str, Any] = tomllib.loads(path.read_text())
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected key=value, e.g. --set steps=100")
        values[key.strip()] = value.strip()
    return TrainConfig.from_dict(values)
