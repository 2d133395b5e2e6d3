"""The registered model's MLflow pyfunc flavour: RGB uint8 images + intrinsics in, depth in metres out, via `infer`.

Logged as code (MLflow "models from code": this file, no pickled object) with the project packages it imports
(CODE_PACKAGES, as `code_paths`), a weights-only checkpoint (`export_weights`: weights, model config and lineage,
no optimizer state) and pip requirements an index serves (`pip_requirements`), so `mlflow models serve` and
`mlflow models build-docker` can build it from the registry alone.

Inputs `predict` accepts (images of one size per call; B x H x W float32 metres out, B = 1 for a single image):
- dict {"image": uint8 H x W x 3 or B x H x W x 3, "intrinsics": (fx, fy, cx, cy) pixels, shape 4 or B x 4, any
  float or int dtype}; without "intrinsics", as a bare array.
- pandas DataFrame, one row per image: column `image` (an H x W x 3 array or nested lists) and either `intrinsics`
  (4 numbers) or the four columns `fx`, `fy`, `cx`, `cy`; without them, as a bare array.
- a bare image array (H x W x 3 or B x H x W x 3) with params {"f_px": F}, the focal in pixels; the principal
  point is then the image centre, ((W - 1) / 2, (H - 1) / 2). Without a focal it is refused: metric depth scales
  with the focal, and a guess would be silently wrong (a warning in a server's log never reaches its client).
Integer images (JSON gives int64) must hold 0-255; float images are refused (0-1 or 0-255 cannot be told apart).
No input schema is declared, because MLflow would enforce one form only; `predict` checks its input itself and says
what is wrong in one line. The output schema and an input example (the dict form) are logged.

model_config at load time: {"device": "auto" | "cpu" | "cuda[:N]", "autocast": "off" | "bf16" | "fp16"}, e.g.
`mlflow.pyfunc.load_model(uri, model_config={"device": "cpu"})`; default auto (CUDA when available) and off.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

from model.device import autocast, check_autocast_mode, resolve_device

WEIGHTS_ARTIFACT = "weights"
WEIGHTS_FILE = "weights.pt"
# What a registered model keeps of a training checkpoint: the network (arch, config, weights) and its lineage;
# optimizer and scheduler state (twice the weights in AdamW) stay in the Ray run's checkpoint.
WEIGHTS_KEYS = (
    "arch",
    "model_config",
    "model",
    "step",
    "samples_digest",
    "train_datasets",
    "store_uri",
    "store_version",
    "source",
)
# The project packages this file imports, directly or not: logged with the model, so it loads without the project.
CODE_PACKAGES = ("model", "pipelines", "schemas")
# The distributions those packages import (the rest come with these or with mlflow).
REQUIRED_DISTRIBUTIONS = (
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "opencv-python-headless",
    "pillow",
    "pandas",
    "pyarrow",
    "pandera",
)
K_COLUMNS = ("fx", "fy", "cx", "cy")

SIGNATURE = ModelSignature(
    inputs=None,
    outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1), "depth_m")]),
    params=ParamSchema([ParamSpec("f_px", "double", None)]),
)
# Small, so logging (which runs the model on it to check it serves) stays fast.
INPUT_EXAMPLE = {
    "image": np.zeros((1, 32, 48, 3), np.uint8),
    "intrinsics": np.array([[40.0, 40.0, 23.5, 15.5]]),
}


def export_weights(checkpoint_path: str, out_path: str) -> None:
    """A training checkpoint -> the weights-only file a registered model carries (WEIGHTS_KEYS)."""
    import torch

    from model.net import load_state

    state = load_state(checkpoint_path)
    torch.save({k: state[k] for k in WEIGHTS_KEYS if k in state}, out_path)


def pip_requirements() -> list[str]:
    """REQUIRED_DISTRIBUTIONS from the installed version's major.minor up to the next major: what an index serves."""
    reqs = []
    for dist in REQUIRED_DISTRIBUTIONS:
        major, minor = (int(v) for v in metadata.version(dist).split(".")[:2])
        reqs.append(f"{dist}>={major}.{minor},<{major + 1}")
    return reqs


def log_pyfunc(weights_path: str, registered_name: str | None = None) -> mlflow.models.model.ModelInfo:
    """Log this file as the active run's pyfunc model `model` with the weights, code and requirements."""
    root = Path(__file__).resolve().parents[1]
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=__file__,
        artifacts={WEIGHTS_ARTIFACT: weights_path},
        code_paths=[str(root / p) for p in CODE_PACKAGES],
        pip_requirements=pip_requirements(),
        signature=SIGNATURE,
        input_example=INPUT_EXAMPLE,
        registered_model_name=registered_name,
    )


def _images(value: Any) -> np.ndarray:
    """B x H x W x 3 uint8 from an image or a batch, uint8 or integers in 0-255."""
    images = np.asarray(value)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"image must be H x W x 3 or B x H x W x 3 RGB; got shape {images.shape}")
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.integer):
        raise ValueError(f"image must be uint8 RGB (0-255); got {images.dtype}")
    if images.size and (images.min() < 0 or images.max() > 255):
        raise ValueError(f"image values must be 0-255; got {images.min()}-{images.max()}")
    return images.astype(np.uint8)


def _intrinsics(value: Any, n: int) -> np.ndarray:
    """n x 4 float64 (fx, fy, cx, cy) from 4 numbers (shared) or n x 4."""
    k = np.asarray(value, dtype=np.float64)
    if k.shape == (4,):
        k = np.broadcast_to(k, (n, 4))
    if k.shape != (n, 4):
        raise ValueError(f"intrinsics must be 4 numbers (fx, fy, cx, cy) or {n} x 4; got shape {k.shape}")
    if not (np.isfinite(k).all() and (k[:, :2] > 0).all()):
        raise ValueError("intrinsics must be finite with fx, fy > 0 (pixels)")
    return k


def _centred_intrinsics(images: np.ndarray, f_px: float | None) -> np.ndarray:
    """B x 4 intrinsics with focal f_px and the principal point at the centre; no focal is an error."""
    if f_px is None:
        raise ValueError(
            'no intrinsics: send {"image", "intrinsics"}, a DataFrame with `intrinsics` or fx, fy, cx, cy, '
            'or an image array with params {"f_px": F}'
        )
    h, w = images.shape[1:3]
    return np.tile([f_px, f_px, (w - 1) / 2.0, (h - 1) / 2.0], (len(images), 1))


def parse_input(model_input: Any, f_px: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Any accepted input form (module docstring) -> (B x H x W x 3 uint8 images, B x 4 float64 intrinsics)."""
    k = None
    if isinstance(model_input, pd.DataFrame):
        if "image" not in model_input.columns:
            raise ValueError(
                "a DataFrame needs an `image` column (and `intrinsics` or fx, fy, cx, cy); "
                f"got columns {list(model_input.columns)}"
            )
        shapes = {np.shape(v) for v in model_input["image"]}
        if len(shapes) > 1:
            raise ValueError(f"images of one size per call; got {sorted(shapes)}")
        images = _images(np.stack([np.asarray(v) for v in model_input["image"]]))
        if "intrinsics" in model_input.columns:
            k = np.stack([np.asarray(v, np.float64) for v in model_input["intrinsics"]])
        elif set(K_COLUMNS) <= set(model_input.columns):
            k = model_input[list(K_COLUMNS)].to_numpy(np.float64)
    elif isinstance(model_input, dict):
        if "image" not in model_input:
            raise ValueError(f"a dict input needs an `image` key (and `intrinsics`); got keys {sorted(model_input)}")
        images = _images(model_input["image"])
        k = model_input.get("intrinsics")
    else:
        images = _images(model_input)
    if k is None:
        return images, _centred_intrinsics(images, f_px)
    return images, _intrinsics(k, len(images))


class DepthPyfunc(mlflow.pyfunc.PythonModel):
    """`infer` behind MLflow's pyfunc interface, on the device model_config names (default: CUDA when available)."""

    # predict takes several input forms and checks them itself (module docstring): no MLflow type-hint validation,
    # and no warning asking for a hint each time MLflow loads this file (its own flag, as its ChatModel uses).
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        """Load the weights-only checkpoint onto the chosen device."""
        from model.net import load_checkpoint  # lazily: torch and timm load with the model, not with this module

        config = context.model_config or {}
        self.device = resolve_device(config.get("device", "auto"))
        self.autocast = check_autocast_mode(config.get("autocast", "off"))
        model, _ = load_checkpoint(context.artifacts[WEIGHTS_ARTIFACT])
        self.model = model.to(self.device)

    # No type hint on model_input: MLflow would infer a schema from one and enforce a single input form.
    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> np.ndarray:
        """Images + intrinsics (any accepted form) -> B x H x W float32 depth, metres."""
        images, k = parse_input(model_input, (params or {}).get("f_px"))
        with autocast(self.device, self.autocast):
            depth = [self.model.infer(img, tuple(kk))["depth_m"] for img, kk in zip(images, k)]
        return np.stack(depth).astype(np.float32, copy=False)


# Models from code: MLflow runs this file and serves the model set here (nothing is unpickled).
mlflow.models.set_model(DepthPyfunc())
