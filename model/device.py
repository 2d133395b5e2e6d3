"""Where inference runs and in which precision: `--device auto|cpu|cuda[:N]` and `--autocast off|bf16|fp16`.

`auto` is the first GPU when torch sees one, else the CPU. Autocast runs the network's matmuls and convolutions in
16-bit; the depth heads stay in float32 (they turn off autocast themselves, model.net and model.metric3d_v1).
Specs are checked without importing torch, so a CLI's --help and argument errors stay fast.

`skip_init` + `assign_weights` build a network whose weights are about to be loaded without initialising them
first: random init of ConvNeXt-Large on a CPU takes longer (16-23 s here) than reading its 0.8 GB of weights.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N"
AUTOCAST_MODES = ("off", "bf16", "fp16")
_DEVICE_SPEC = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device_spec(spec: str) -> str:
    """The spec itself when it is auto, cpu, cuda or cuda:N; a ValueError naming the valid forms otherwise."""
    if not _DEVICE_SPEC.fullmatch(spec):
        raise ValueError(f"unknown device {spec!r}; valid: {DEVICE_HELP}")
    return spec


def check_autocast_mode(mode: str) -> str:
    """The mode itself when it is one of AUTOCAST_MODES; a ValueError listing them otherwise."""
    if mode not in AUTOCAST_MODES:
        raise ValueError(f"unknown autocast {mode!r}; valid: {', '.join(AUTOCAST_MODES)}")
    return mode


def _device_arg(text: str) -> str:
    """argparse type for --device: the spec's form only; whether the device exists is checked at load."""
    try:
        return check_device_spec(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """--device and --autocast, as every inference CLI takes them."""
    parser.add_argument("--device", type=_device_arg, default="auto", help=f"where models run: {DEVICE_HELP}")
    parser.add_argument(
        "--autocast",
        choices=AUTOCAST_MODES,
        default="off",
        help="run the network in bf16 or fp16 (depth heads stay float32); default off",
    )


def resolve_device(spec: str = "auto") -> torch.device:
    """auto -> cuda when torch.cuda.is_available() else cpu; an explicit CUDA device that is not there raises."""
    import torch

    check_device_spec(spec)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec}: CUDA is not available here (torch {torch.__version__}); use cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def autocast(device: torch.device, mode: str = "off") -> contextlib.AbstractContextManager:
    """A context running the network in `mode` precision on `device` (a no-op for off)."""
    import torch

    check_autocast_mode(mode)
    if mode == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if mode == "bf16" else torch.float16)


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Inside, torch.empty allocates on the meta device: parameters (all made by torch.empty, then initialised
    in place) cost nothing, while buffers built from values (ImageNet mean, depth bins) stay real."""
    import torch
    from torch.overrides import TorchFunctionMode

    class _EmptyOnMeta(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            kwargs = kwargs or {}
            if func is torch.empty:
                kwargs["device"] = "meta"
            return func(*args, **kwargs)

    with _EmptyOnMeta():
        yield


def assign_weights(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """load_state_dict(strict, assign): the loaded tensors become the weights; any tensor left on the meta device
    (made under skip_init and not in the checkpoint) is an error naming it."""
    module.load_state_dict(state_dict, assign=True)
    left = [name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"checkpoint leaves {len(left)} tensors uninitialised, e.g. {', '.join(left[:5])}")
