"""python -m infra.check: syntax and shape checks of the deploy files (they cannot be launched here).

Parses every YAML under infra/ and checks the fields the launchers need: a cluster launcher file names
its provider, node types and head type; a RayJob names its entrypoint (a `python -m train.run`) and
worker groups. The train presets must load as TrainConfig.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from train.config import PRESETS_DIR, load_config

INFRA = Path(__file__).parent


def check_file(path: Path) -> list[str]:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return [f"{path}: not valid YAML: {exc}"]
    problems = []
    if doc.get("kind") == "RayJob":
        spec = doc.get("spec", {})
        if "train.run" not in spec.get("entrypoint", ""):
            problems.append(f"{path}: spec.entrypoint must run python -m train.run")
        if not spec.get("rayClusterSpec", {}).get("workerGroupSpecs"):
            problems.append(f"{path}: spec.rayClusterSpec.workerGroupSpecs is empty")
    else:
        for key in ("cluster_name", "provider", "available_node_types", "head_node_type"):
            if key not in doc:
                problems.append(f"{path}: missing {key}")
        if doc.get("head_node_type") not in doc.get("available_node_types", {}):
            problems.append(f"{path}: head_node_type is not one of available_node_types")
    return problems


def main() -> int:
    problems = [p for f in sorted(INFRA.glob("*.yaml")) for p in check_file(f)]
    for preset in sorted(PRESETS_DIR.glob("*.toml")):
        try:
            load_config(str(preset))
        except (KeyError, ValueError) as exc:
            problems.append(f"{preset}: {exc}")
    for p in problems:
        print(p, file=sys.stderr)
    print(
        f"checked {len(list(INFRA.glob('*.yaml')))} deploy files and the train presets: "
        f"{'OK' if not problems else f'{len(problems)} problems'}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
