"""The registered model's MLflow pyfunc flavour: uint8 images + intrinsics in, metres out, via `infer`."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import Schema, TensorSpec

CHECKPOINT_ARTIFACT = "checkpoint"

# Variable batch and image size: images B x H x W x 3 uint8, intrinsics B x 4 (fx, fy, cx, cy) pixels,
# output depth B x H x W float32 metres.
SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3), "image"),
            TensorSpec(np.dtype(np.float64), (-1, 4), "intrinsics"),
        ]
    ),
    outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1), "depth_m")]),
)


class DepthPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from model.net import load_checkpoint

        self.model, _ = load_checkpoint(context.artifacts[CHECKPOINT_ARTIFACT])

    def predict(self, context: Any, model_input: dict[str, np.ndarray], params: dict | None = None) -> np.ndarray:
        images = np.asarray(model_input["image"], np.uint8)
        k = np.asarray(model_input["intrinsics"], np.float64).reshape(len(images), 4)
        return np.stack([self.model.infer(img, tuple(kk))["depth_m"] for img, kk in zip(images, k)])
