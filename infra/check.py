"""python -m infra.check: the deploy files, checked as Ray and Kubernetes will check them (none can be launched here).

- infra/ray-cluster.yaml: Ray's own preparation and schema validation, as `ray up` runs them before it touches a
  cloud (ray.autoscaler._private.util.prepare_config and validate_config, ray/autoscaler/ray-schema.json).
- infra/kuberay-rayjob.yaml: the RayJob CRD schema (infra/kuberay-rayjob.schema.json, pruned from KubeRay's), with
  unknown fields refused as `kubectl apply` does, then the rules KubeRay's operator applies before it creates a
  cluster; its entrypoint must be a `python -m` module of this project, with options the module declares and a
  train config that uses exactly the GPUs the worker groups ask for (one Train worker per GPU).
- infra/Dockerfile: parses (known instructions, FROM first, files it copies exist), builds FROM Ray's image at the
  RayJob's rayVersion and names the image the RayJob runs.
The train presets must load as TrainConfig. Every problem is one line naming the file and the field.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import logging
import re
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from train.config import PRESETS_DIR, load_config

INFRA = Path(__file__).parent
ROOT = INFRA.parent
RAYJOB_SCHEMA = INFRA / "kuberay-rayjob.schema.json"
DOCKERFILE = INFRA / "Dockerfile"
RAYJOB_API_VERSION = "ray.io/v1"
# KubeRay's limit (utils.MaxRayJobNameLength): the RayCluster it creates appends a suffix to the job's name.
MAX_RAYJOB_NAME = 47
_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DOCKER_INSTRUCTIONS = frozenset(
    "ADD ARG CMD COPY ENTRYPOINT ENV EXPOSE FROM HEALTHCHECK LABEL MAINTAINER ONBUILD RUN SHELL STOPSIGNAL USER "
    "VOLUME WORKDIR".split()
)
GPU_RESOURCE = "nvidia.com/gpu"


def _where(path: Iterable[Any]) -> str:
    """A jsonschema error path as a field name: spec.rayClusterSpec.workerGroupSpecs[0].replicas."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "(top level)"


def check_cluster(doc: dict, path: Path) -> list[str]:
    """Ray's cluster launcher checks, in the order `ray up` runs them."""
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    # prepare_config logs what it fills in (e.g. the head's max_workers) at INFO: not a finding.
    logging.getLogger("ray.autoscaler._private.util").setLevel(logging.WARNING)
    try:
        validate_config(prepare_config(doc))
    except jsonschema.ValidationError as exc:
        return [f"{path}: {_where(exc.absolute_path)}: {exc.message} (Ray's cluster config schema)"]
    except KeyError as exc:
        return [f"{path}: missing field {exc.args[0]!r} (Ray's cluster config)"]
    except (ValueError, TypeError) as exc:
        return [f"{path}: {exc} (Ray's cluster config)"]
    return []


def _groups(spec: dict) -> list[tuple[str, dict]]:
    cluster = spec.get("rayClusterSpec") or {}
    groups = [("headGroupSpec", cluster.get("headGroupSpec") or {})]
    return groups + [(f"workerGroupSpecs[{i}]", g) for i, g in enumerate(cluster.get("workerGroupSpecs") or [])]


def _kuberay_rules(doc: dict) -> list[str]:
    """The operator's validation (ray-operator/controllers/ray/utils/validation.go, v1.7) for the fields we use."""
    problems = []
    name = (doc.get("metadata") or {}).get("name", "")
    if len(name) > MAX_RAYJOB_NAME or not _DNS1035.fullmatch(name):
        problems.append(f"metadata.name: {name!r} must be a DNS-1035 label of at most {MAX_RAYJOB_NAME} characters")
    spec = doc["spec"]
    if spec.get("ttlSecondsAfterFinished", 0) < 0:
        problems.append("spec.ttlSecondsAfterFinished: must be >= 0")
    if spec.get("backoffLimit", 0) < 0:
        problems.append("spec.backoffLimit: must be >= 0")
    if not spec.get("rayClusterSpec") and not spec.get("clusterSelector"):
        problems.append("spec.rayClusterSpec: one of rayClusterSpec or clusterSelector must be set")
    try:
        if not isinstance(yaml.safe_load(spec.get("runtimeEnvYAML") or "{}"), dict):
            problems.append("spec.runtimeEnvYAML: must be a YAML mapping")
    except yaml.YAMLError as exc:
        problems.append(f"spec.runtimeEnvYAML: not valid YAML ({exc})")
    autoscaling = (spec.get("rayClusterSpec") or {}).get("enableInTreeAutoscaling", False)
    for where, group in _groups(spec)[1:]:
        lo, hi = group.get("minReplicas"), group.get("maxReplicas")
        if not autoscaling and (lo is None or hi is None):
            problems.append(f"spec.rayClusterSpec.{where}: set minReplicas and maxReplicas (autoscaling is off)")
        elif lo is not None and hi is not None and not 0 <= lo <= group.get("replicas", lo) <= hi:
            problems.append(f"spec.rayClusterSpec.{where}: need 0 <= minReplicas <= replicas <= maxReplicas")
    if not _groups(spec)[1:]:
        problems.append("spec.rayClusterSpec.workerGroupSpecs: no worker group to train on")
    return problems


def _cli_flags(source: Path) -> set[str]:
    """The --options a CLI module declares with argparse's add_argument, read from its source (nothing imported)."""
    flags = {"--help"}
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            flags |= {a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")}
    return flags


def _entrypoint_problems(spec: dict) -> list[str]:
    """The entrypoint runs a module of this project with options it has, and its train config uses exactly the
    worker GPUs."""
    argv = shlex.split(spec.get("entrypoint", ""))
    if argv[:2] != ["python", "-m"] or len(argv) < 3:
        return ["spec.entrypoint: must be `python -m MODULE ...` (the image runs this project's modules)"]
    spec_of = importlib.util.find_spec(argv[2])
    if spec_of is None or spec_of.origin is None:
        return [f"spec.entrypoint: module {argv[2]} is not in this project"]
    known = _cli_flags(Path(spec_of.origin))
    unknown = [a for a in argv[3:] if a.startswith("--") and a.split("=")[0] not in known]
    if unknown:
        return [f"spec.entrypoint: {argv[2]} has no option {', '.join(unknown)} (it takes {', '.join(sorted(known))})"]
    if argv[2] != "train.run":
        return []
    opts, sets = {}, []
    for flag, value in zip(argv[3:], argv[4:]):
        if flag == "--set":
            sets.append(value)
        elif flag.startswith("--"):
            opts[flag] = value
    try:
        cfg = load_config(opts.get("--config", ""), sets)
    except (KeyError, ValueError, FileNotFoundError) as exc:
        return [f"spec.entrypoint: {exc.args[0]}"]
    gpus = 0
    for _, group in _groups(spec)[1:]:
        for container in (group.get("template") or {}).get("spec", {}).get("containers", [])[:1]:
            limits = (container.get("resources") or {}).get("limits") or {}
            gpus += int(limits.get(GPU_RESOURCE, 0)) * group.get("replicas", group.get("minReplicas", 0))
    wanted = cfg.num_workers if cfg.use_gpu else 0
    if wanted != gpus:
        return [
            f"spec.entrypoint: the config trains on {wanted} GPU workers but the worker groups hold {gpus} GPUs: "
            f"pass --set num_workers={gpus} or change the replicas (one Train worker per GPU)"
        ]
    return []


def check_rayjob(doc: dict, path: Path) -> list[str]:
    """The RayJob CRD schema (unknown fields refused), KubeRay's own rules, and the entrypoint."""
    import jsonschema

    if doc.get("apiVersion") != RAYJOB_API_VERSION:
        return [f"{path}: apiVersion: {doc.get('apiVersion')!r} is not {RAYJOB_API_VERSION}"]
    schema = json.loads(RAYJOB_SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(map(str, e.path)))
    problems = [f"{_where(e.absolute_path)}: {e.message} (RayJob CRD schema)" for e in errors]
    if not problems:
        problems = _kuberay_rules(doc) or _entrypoint_problems(doc["spec"])
    return [f"{path}: {p}" for p in problems]


def dockerfile_instructions(text: str) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments) of a Dockerfile: comments dropped, `\\` continuations joined."""
    out, start, parts = [], 0, []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not parts and (not stripped or stripped.startswith("#")):
            continue
        if parts and stripped.startswith("#"):
            continue  # a comment inside a continued instruction is dropped, as Docker does
        start = start if parts else number
        parts.append(stripped.removesuffix("\\").strip())
        if not stripped.endswith("\\"):
            word, _, args = " ".join(parts).partition(" ")
            out.append((start, word.upper(), args.strip()))
            parts = []
    if parts:
        out.append((start, "", "unterminated line continuation"))
    return out


def check_dockerfile(path: Path, rayjob: dict | None) -> list[str]:
    """Parses; FROM comes first (after ARGs) and is Ray's image at the RayJob's rayVersion; COPY sources exist in
    the build context (the repository root); the RayJob's image is named and its entrypoint's package copied in."""
    text = path.read_text()
    steps = dockerfile_instructions(text)
    problems = [f"line {n}: unknown instruction {w or args!r}" for n, w, args in steps if w not in DOCKER_INSTRUCTIONS]
    first = next((s for s in steps if s[1] != "ARG"), None)
    if first is None or first[1] != "FROM":
        return [f"{path}: {p}" for p in [*problems, "FROM must be the first instruction (only ARG may precede it)"]]
    copied = set()
    for n, word, args in steps:
        if word in ("COPY", "ADD"):
            sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
            copied.update(sources)
            problems += [
                f"line {n}: {word} {s!r} is not in the build context" for s in sources if not (ROOT / s).exists()
            ]
    if rayjob is not None:
        spec = rayjob.get("spec") or {}
        version = (spec.get("rayClusterSpec") or {}).get("rayVersion", "")
        if not re.fullmatch(rf"rayproject/ray:{re.escape(version)}(-[\w.-]+)?", first[2]):
            problems.append(f"FROM {first[2]}: must be rayproject/ray:{version}[-variant], the RayJob's rayVersion")
        containers = [
            c for _, g in _groups(spec) for c in (g.get("template") or {}).get("spec", {}).get("containers", [])
        ]
        for image in sorted({c["image"] for c in containers if "image" in c}):
            if image not in text:
                problems.append(f"the RayJob's image {image} is not named in the file (docker build -t ...)")
        argv = shlex.split(spec.get("entrypoint", ""))
        package = argv[2].split(".")[0] if argv[:2] == ["python", "-m"] and len(argv) > 2 else None
        if package and package not in copied:
            problems.append(
                f"the RayJob's entrypoint module {argv[2]} is not copied into the image (COPY {package} ...)"
            )
    return [f"{path}: {p}" for p in problems]


def _load(path: Path) -> tuple[dict | None, list[str]]:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return None, [f"{path}: not valid YAML: {exc}"]
    if not isinstance(doc, dict):
        return None, [f"{path}: not a YAML mapping"]
    return doc, []


def check_file(path: Path) -> list[str]:
    """Problems of one deploy file: a RayJob (by its kind) or a Ray cluster launcher file."""
    doc, problems = _load(path)
    if doc is None:
        return problems
    return check_rayjob(doc, path) if doc.get("kind") == "RayJob" else check_cluster(doc, path)


def main() -> int:
    files = sorted(INFRA.glob("*.yaml"))
    problems = [p for f in files for p in check_file(f)]
    rayjob, _ = _load(INFRA / "kuberay-rayjob.yaml")
    problems += check_dockerfile(DOCKERFILE, rayjob)
    for preset in sorted(PRESETS_DIR.glob("*.toml")):
        try:
            load_config(str(preset))
        except (KeyError, ValueError) as exc:
            problems.append(f"{preset}: {exc}")
    for p in problems:
        print(p, file=sys.stderr)
    print(
        f"checked {len(files)} deploy files, the Dockerfile and the train presets: "
        f"{'OK' if not problems else f'{len(problems)} problems'}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
