"""Loader throughput against the shared reference loader, interleaved in one run; and the Ray Data path's CPU.

    python -m bench.loader [--reps 3] [--kinds kitti,nyu,nuscenes]
    python -m bench.loader --ray [--epochs 3]

The reference is ../shared/bench/loader_anchor/anchor.py --method files: the Metric3D-style loader (cv2.imread
of each sample's files, whole-image resize, crop, float32 normalisation, DataLoader collate). Its corpus
(100 samples per kind) is built with `anchor.py --build` under --root when missing (files only: the MDS and
zarr stores it can also build are not needed here). The same files are ingested into a store per kind with
the metric3d_json adapter. Each run is a fresh subprocess, interleaved rep -> kind -> (reference, ours), one
thread per library, batch 8, 512x960 crops, CSTM label, ratio 0.9-1.4, flip 0.5; one untimed pass, then one
timed pass (steady state, warm page cache), as the reference measures itself. Figure: samples per CPU-second
of the process (all its threads); the ratio is of the medians.

Ours yields uint8 RGB (ImageNet normalisation runs on the training device: a float32 batch is 4x the bytes to
move), the reference float32; both yield float32 depth, a bool mask and intrinsics.

--ray: CPU per sample of the Ray Data path (2 loader tasks at once) against the in-process path, one epoch
each of a 600-sample KITTI-like store, counting every process of the local Ray runtime this bench starts (its process tree, from /proc).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ANCHOR = Path(__file__).resolve().parents[2] / "shared" / "bench" / "loader_anchor" / "anchor.py"
KINDS = ("kitti", "nyu", "nuscenes")
CROP = (512, 960)
BATCH = 8


def _cpu_s() -> float:
    """CPU seconds of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _single_thread() -> None:
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _kw() -> dict:
    return {"batch_size": BATCH, "crop_hw": CROP, "cstm": "label", "ratio_range": (0.9, 1.4)}


def measure_ours(store_url: str) -> dict:
    """One untimed pass over the store's epoch, then one timed pass: samples per CPU-second."""
    _single_thread()
    from pipelines import training_batches
    from store import open_store

    store = open_store(store_url)
    for _ in training_batches(store, epoch=0, **_kw()):
        pass
    c0, t0, n = _cpu_s(), time.perf_counter(), 0
    for batch in training_batches(store, epoch=1, **_kw()):
        n += len(batch["sample_id"])
    cpu, wall = _cpu_s() - c0, time.perf_counter() - t0
    return {"samples": n, "cpu_s": cpu, "wall_s": wall, "sps_per_cpu_s": n / cpu}


def _anchor(args: argparse.Namespace, *extra: str, env: dict | None = None) -> list[dict]:
    cmd = [sys.executable, str(args.anchor), "--root", str(args.root), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"reference loader failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _ours(store_url: str) -> dict:
    cmd = [sys.executable, "-m", "bench.loader", "--measure-store", store_url]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"our loader failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def prepare(args: argparse.Namespace) -> dict[str, dict]:
    """The reference corpus (built when missing) and one store per kind; their bytes."""
    from ingest.engine import ingest
    from store import open_store

    files = args.root / "files"
    if not (files / "annotations.json").exists():
        print(f"building the reference corpus under {args.root} (anchor.py --build, files only)", flush=True)
        _anchor(args, "--build", env={"ANCHOR_FILES_ONLY": "1"})
    out = {}
    for kind in args.kinds:
        ann = files / f"{kind}_annotations.json"
        url = str(args.root / "platform_stores" / kind)
        if not Path(url).exists():
            print(f"ingesting {ann} into {url}", flush=True)
            ingest("metric3d_json", str(ann), url, split="train", workers=0, progress=False)
        entries = json.loads(ann.read_text())["files"]
        source = sum((files / e[k]).stat().st_size for e in entries for k in ("rgb", "depth"))
        cat = open_store(url).catalog(columns=["rgb_bytes", "depth_bytes", "depth_codec", "rgb_codec"])
        stored = sum(cat["rgb_bytes"].to_pylist()) + sum(cat["depth_bytes"].to_pylist())
        codecs = sorted(set(cat["rgb_codec"].to_pylist())) + sorted(set(cat["depth_codec"].to_pylist()))
        out[kind] = {"store": url, "source_bytes": source, "store_bytes": stored, "codecs": codecs}
    return out


def compare(args: argparse.Namespace) -> dict:
    """Interleaved runs (rep -> kind -> reference, ours); medians and the ratio of medians per kind."""
    stores = prepare(args)
    runs: dict[str, dict[str, list[float]]] = {k: {"reference": [], "ours": []} for k in args.kinds}
    for rep in range(args.reps):
        for kind in args.kinds:
            ref = next(
                r
                for r in _anchor(args, "--method", "files", "--corpus", kind, "--reps", "1", "--rep-offset", str(rep))
                if r.get("mode") == "run"
            )
            ours = _ours(stores[kind]["store"])
            runs[kind]["reference"].append(ref["sps_per_cpu_s"])
            runs[kind]["ours"].append(ours["sps_per_cpu_s"])
            print(
                f"rep {rep} {kind:9s} reference {ref['sps_per_cpu_s']:6.1f}  ours {ours['sps_per_cpu_s']:6.1f} "
                "samples/CPU-s",
                flush=True,
            )
    results = {}
    for kind in args.kinds:
        ref, ours = statistics.median(runs[kind]["reference"]), statistics.median(runs[kind]["ours"])
        s = stores[kind]
        results[kind] = {
            "reference_sps_per_cpu_s": ref,
            "ours_sps_per_cpu_s": ours,
            "ratio": ours / ref,
            "store_over_source_bytes": s["store_bytes"] / s["source_bytes"],
            "codecs": s["codecs"],
            "runs": runs[kind],
        }
    print(f"\nmedians of {args.reps} interleaved runs (samples per CPU-second, batch {BATCH}, {CROP[0]}x{CROP[1]}):")
    for kind, r in results.items():
        print(
            f"{kind:9s} ours {r['ours_sps_per_cpu_s']:6.1f}  reference {r['reference_sps_per_cpu_s']:6.1f}  "
            f"ratio {r['ratio']:4.2f}x  store/source bytes {r['store_over_source_bytes']:.3f} "
            f"({', '.join(r['codecs'])})"
        )
    return results


def _tree_cpu_s() -> float:
    """CPU seconds of this process and every process under it (the local Ray runtime: raylet, workers, actors),
    including exited children their parents have reaped (cutime, cstime), from /proc."""
    parent, times = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:  # exited meanwhile
                continue
            parent[int(entry)] = int(fields[1])
            times[int(entry)] = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        pid = frontier.pop()
        children = [c for c, p in parent.items() if p == pid and c not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(times[p] for p in tree if p in times) / os.sysconf("SC_CLK_TCK")


def _ray_store(args: argparse.Namespace) -> str:
    """A KITTI-like store of 3 x copies samples (the real frames under distinct names), built once under --root:
    epochs long enough that a dataset's start (planning, scheduling the first tasks) is not what is measured."""
    from bench.fixtures import build
    from ingest.engine import ingest

    url = args.root / f"platform_stores/kitti_x{args.copies}"
    if not url.exists():
        print(f"ingesting {3 * args.copies} KITTI-like samples into {url}", flush=True)
        ann = build("kitti", args.root / f"kitti_x{args.copies}_src", copies=args.copies)
        ingest("metric3d_json", str(ann), str(url), split="train", workers=0, progress=False)
    return str(url)


def measure_ray(args: argparse.Namespace) -> dict:
    """CPU per sample (this process tree) of the Ray Data path and of the in-process path, same epoch."""
    _single_thread()
    from infra.ray_runtime import init_ray
    from pipelines import iter_torch, training_batches, training_dataset

    url = _ray_store(args)
    kw = {**_kw(), "epoch": 1}
    for _ in training_batches(url, **{**kw, "epoch": 0}):  # warm the page cache and this process
        pass
    c0, t0 = _tree_cpu_s(), time.perf_counter()
    n = sum(len(b["sample_id"]) for b in training_batches(url, **kw))
    local = {"samples": n, "cpu_s": _tree_cpu_s() - c0, "wall_s": time.perf_counter() - t0}
    init_ray(2)
    ray_kw = {"num_cpus": 1.0, "concurrency": args.ray_tasks}
    for _ in iter_torch(training_dataset(url, **{**kw, "epoch": 0}, **ray_kw), BATCH):  # start Ray's workers
        pass
    c0, t0 = _tree_cpu_s(), time.perf_counter()
    n = sum(len(b["sample_id"]) for b in iter_torch(training_dataset(url, **kw, **ray_kw), BATCH))
    ray_run = {"samples": n, "cpu_s": _tree_cpu_s() - c0, "wall_s": time.perf_counter() - t0}
    result = {
        "in_process_cpu_ms_per_sample": 1e3 * local["cpu_s"] / local["samples"],
        "ray_data_cpu_ms_per_sample": 1e3 * ray_run["cpu_s"] / ray_run["samples"],
        "in_process": local,
        "ray_data": ray_run,
    }
    result["ratio"] = result["ray_data_cpu_ms_per_sample"] / result["in_process_cpu_ms_per_sample"]
    print(
        f"one epoch of {n} KITTI-like samples: in-process {result['in_process_cpu_ms_per_sample']:.2f} CPU-ms/sample "
        f"({local['wall_s']:.1f} s); Ray Data ({args.ray_tasks} tasks at once) "
        f"{result['ray_data_cpu_ms_per_sample']:.2f} CPU-ms/sample ({ray_run['wall_s']:.1f} s): {result['ratio']:.2f}x"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help="interleaved runs per kind (the median is reported)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma list of kitti, nyu, nuscenes")
    parser.add_argument("--root", type=Path, default=Path("/tmp/loader_anchor"), help="reference corpus + stores")
    parser.add_argument("--anchor", type=Path, default=ANCHOR, help="the reference loader script")
    parser.add_argument("--ray", action="store_true", help="measure the Ray Data path's CPU per sample instead")
    parser.add_argument("--copies", type=int, default=200, help="--ray: copies of the 3 KITTI frames in its store")
    parser.add_argument("--ray-tasks", type=int, default=2, help="--ray: loader tasks running at once")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--measure-store", help=argparse.SUPPRESS)  # one run of ours, in a fresh process
    args = parser.parse_args()
    if args.measure_store:
        print(json.dumps(measure_ours(args.measure_store)))
        return
    args.kinds = args.kinds.split(",")
    unknown = sorted(set(args.kinds) - set(KINDS))
    if unknown:
        parser.error(f"unknown kinds {unknown}; valid: {', '.join(KINDS)}")
    if not args.anchor.exists():
        raise SystemExit(f"the reference loader is not at {args.anchor}: pass --anchor PATH")
    results = measure_ray(args) if args.ray else compare(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
