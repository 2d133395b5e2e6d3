"""Import an official Metric3D v1 checkpoint and register it in MLflow like a model trained here.

    python -m model.import_metric3d CKPT.pth --name metric3d_v1_convtiny [--registered-model NAME]
                                    [--train-datasets a,b] [--input-hw 544,1216] [--experiment NAME]

CKPT.pth is an official release file (e.g. convtiny_hourglass_v1.pth, convlarge_hourglass_0.3_150_step750k_v1.1.pth):
a dict whose `model_state_dict` keys start with depth_model.encoder. / depth_model.decoder. It is read with
torch.load(weights_only=True), so a file carrying pickled code is refused, and every official key must map onto
our network (model.metric3d_v1) with every one of ours filled, or nothing is registered.

The network is saved in our checkpoint format and logged as the same pyfunc model as train.run's (one MLflow run
in --experiment, registered under --registered-model, the new version aliased `candidate`), so it scores like ours:
    python -m eval.run --model models:/NAME@candidate ...   python -m eval.infer PHOTO --model models:/NAME@candidate
An official file can also be scored without importing it: --model metric3d_v1:CKPT.pth.

Lineage: the release files do not record their training sets, so by default the run has no train_datasets tag and
reports call every benchmark's zero-shot status unknown. --train-datasets a,b records them when you know them.

Tracking: MLFLOW_TRACKING_URI when set, else ./mlflow.db (train.tracking).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import sys
import tempfile
from dataclasses import asdict

from model.config import MODELS, Metric3DV1Config

# The variants, read from the light config registry (model.metric3d_v1 imports torch: loaded when importing).
VARIANT_NAMES = sorted(n for n, c in MODELS.items() if isinstance(c, Metric3DV1Config))

CHECKPOINT_FILE = "checkpoint.pt"  # our format, written here and turned into the registered weights file


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hw(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.split(","))
    return h, w


def import_checkpoint(
    path: str,
    name: str,
    registered_model: str,
    train_datasets: list[str] | None = None,
    input_hw: tuple[int, int] | None = None,
    experiment: str = "metric3d-import",
) -> dict[str, str]:
    """Load, check and register an official checkpoint; returns run id, version and model URI."""
    import mlflow

    from model.metric3d_v1 import ARCH, load_official, save_checkpoint
    from train import tracking

    model = load_official(path, name, input_hw)
    source = {"path": os.path.abspath(path), "sha256": _sha256(path)}
    with tracking.start_run(experiment, f"import-{name}") as run:
        tracking.log_config(asdict(model.config))
        mlflow.set_tags({"arch": ARCH, "source_checkpoint": source["path"], "source_sha256": source["sha256"]})
        if train_datasets is not None:
            # Absent tag = unknown lineage (eval.models); present = the datasets the official training saw.
            mlflow.set_tag("train_datasets", ",".join(sorted(train_datasets)))
        with tempfile.TemporaryDirectory() as tmp:
            ours = os.path.join(tmp, CHECKPOINT_FILE)
            save_checkpoint(ours, model, {"train_datasets": train_datasets, "source": source})
            version, uri = tracking.register_model(ours, registered_model)
    return {"run_id": run.info.run_id, "version": version, "model_uri": uri}


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints the registered model's URI."""
    parser = argparse.ArgumentParser(
        prog="python -m model.import_metric3d",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="official Metric3D v1 checkpoint file (.pth)")
    parser.add_argument("--name", required=True, choices=VARIANT_NAMES, help="the variant the file holds")
    parser.add_argument("--registered-model", help="MLflow registered model name (default: --name)")
    parser.add_argument(
        "--train-datasets", help="comma list of the datasets the checkpoint was trained on (default: unknown)"
    )
    parser.add_argument(
        "--input-hw", type=_hw, help="network input H,W for infer(), multiples of 32 (default: the official 544,1216)"
    )
    parser.add_argument("--experiment", default="metric3d-import", help="MLflow experiment of the import run")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        parser.error(f"no such file: {args.checkpoint}")
    datasets = [d for d in args.train_datasets.split(",") if d] if args.train_datasets is not None else None
    try:
        out = import_checkpoint(
            args.checkpoint, args.name, args.registered_model or args.name, datasets, args.input_hw, args.experiment
        )
    except (ValueError, pickle.UnpicklingError) as e:  # a bad key map, a bad size, or a file carrying code
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"registered {out['model_uri']} (version {out['version']}, run {out['run_id']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
