"""python -m train.promote NAME VERSION [--alias ALIAS]: point a registered model's alias at one of its versions.

    python -m train.promote metric-depth 3      # models:/metric-depth@champion is now version 3

Every registration aliases its new version `candidate` (train.run, model.import_metric3d); `champion` (the default
here) is a person's decision, made with this command or in the MLflow UI. An alias moves: the version it named
before loses it. Tracking: MLFLOW_TRACKING_URI, else ./mlflow.db, which must exist.
"""

from __future__ import annotations

import argparse
import sys

CHAMPION_ALIAS = "champion"


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints the alias's URI and the version it now names."""
    parser = argparse.ArgumentParser(
        prog="python -m train.promote", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name", help="registered model name")
    parser.add_argument("version", help="the version the alias should name")
    parser.add_argument("--alias", default=CHAMPION_ALIAS, help=f"alias to set (default: {CHAMPION_ALIAS})")
    args = parser.parse_args(argv)
    from train import tracking  # lazily: MLflow's import is slow, --help is not

    try:
        tracking.use_existing_store()
        tracking.set_alias(args.name, args.version, args.alias)
    except tracking.TrackingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"models:/{args.name}@{args.alias} -> version {args.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
