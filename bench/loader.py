"""Loader throughput: our store + crop-first transform against a Metric3D-style loader, same transform.

    python -m bench.loader [--batches 30] [--skip-ray]

One process, one thread per library, batch 8, 512x960 crops, CSTM label mode, in-process path; figures
are samples per CPU-second (process time). The Metric3D-style loader reads the source RGB and depth
files with OpenCV per sample, resizes the whole image, then crops (as Metric3D's transforms do). Also:
where our time goes, store bytes against source bytes per RGB policy, and the Ray Data path (2 CPUs).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.fixtures import KINDS, build, source_bytes  # noqa: E402
from ingest.engine import ingest  # noqa: E402
from pipelines.cstm import SPARSE_VALID_FRAC, apply, plan_transform, warp_depth, warp_rgb  # noqa: E402
from pipelines.loading import Augment, collate, load_sample  # noqa: E402
from pipelines.sampling import augment_rng  # noqa: E402
from store import open_store  # noqa: E402
from store.store import READ_COLUMNS  # noqa: E402

CROP = (512, 960)
BATCH = 8


def metric3d_style(entry: dict, root: Path, aug: Augment, position: int) -> dict:
    """Read both source files with OpenCV, resize the whole image, then crop/pad, as Metric3D does."""
    rgb = cv2.imread(str(root / entry["rgb"]), cv2.IMREAD_COLOR)[:, :, ::-1]
    depth = cv2.imread(str(root / entry["depth"]), cv2.IMREAD_UNCHANGED).astype(np.float32) / entry["depth_scale"]
    rng = augment_rng(0, 0, position)
    ratio = float(rng.uniform(*aug.ratio_range))
    crop_uv = (float(rng.random()), float(rng.random()))
    flip = bool(rng.random() < aug.flip_prob)
    k = tuple(entry["cam_in"])
    plan = plan_transform(rgb.shape[:2], k, aug.cstm, ratio, aug.crop_hw, crop_uv, flip)
    h, w = round(rgb.shape[0] * plan.sy), round(rgb.shape[1] * plan.sx)
    full = cv2.resize(np.ascontiguousarray(rgb), (w, h), interpolation=cv2.INTER_LINEAR)
    whole = plan_transform(rgb.shape[:2], k, aug.cstm, ratio)  # the same resize, no crop
    sparse = np.count_nonzero(depth) < SPARSE_VALID_FRAC * depth.size
    _, full_depth, _, _ = apply(np.zeros((1, 1, 3), np.uint8), depth, whole, sparse)
    ch, cw = aug.crop_hw
    out_rgb = np.zeros((ch, cw, 3), np.uint8)
    out_depth = np.zeros((ch, cw), np.float32)
    x0, y0 = round(plan.x0), round(plan.y0)  # Metric3D crops the resized image on its own pixel grid
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + ch, h), min(x0 + cw, w)
    out_rgb[ys - y0 : ye - y0, xs - x0 : xe - x0] = full[ys:ye, xs:xe]
    out_depth[ys - y0 : ye - y0, xs - x0 : xe - x0] = full_depth[ys:ye, xs:xe]
    if flip:
        out_rgb, out_depth = out_rgb[:, ::-1], out_depth[:, ::-1]
    return {
        "rgb": out_rgb,  # HWC; the shared collate stacks (one copy) and views it as CHW, as Metric3D's transpose view
        "depth_c": out_depth[None].copy(),
        "valid": (out_depth > 0)[None],
        "k_px_c": np.asarray(plan.k_px, np.float32),
        "f_px": np.float32(sum(k[:2]) / 2),
        "sample_id": entry["rgb"],
        "dataset": "m3d",
    }


def _rate(fn, n_batches: int) -> float:
    t0 = time.process_time()
    for b in range(n_batches):
        collate([fn(b * BATCH + i) for i in range(BATCH)])
    return n_batches * BATCH / (time.process_time() - t0)


def _breakdown(store, rows: list[dict], aug: Augment, n: int) -> dict[str, float]:
    """ms per sample in: read + decode, plan + rgb warp, depth warp, collate."""
    t = dict.fromkeys(("read+decode", "rgb resize+crop", "depth resize+crop", "collate"), 0.0)
    examples = []
    for i in range(n):
        row = rows[i % len(rows)]
        t0 = time.process_time()
        rgb, depth = store.read_arrays(row)
        t1 = time.process_time()
        rng = augment_rng(0, 0, i)
        plan = plan_transform(
            rgb.shape[:2],
            (row["fx"], row["fy"], row["cx"], row["cy"]),
            aug.cstm,
            float(rng.uniform(*aug.ratio_range)),
            aug.crop_hw,
            (rng.random(), rng.random()),
            bool(rng.random() < 0.5),
        )
        out = warp_rgb(rgb, plan)
        t2 = time.process_time()
        d = warp_depth(depth, plan, row["valid_frac"] < SPARSE_VALID_FRAC)
        t3 = time.process_time()
        examples.append(
            {
                "rgb": out,
                "depth_c": d[None],
                "valid": (d > 0)[None],
                "k_px_c": np.asarray(plan.k_px, np.float32),
                "f_px": np.float32(1),
                "sample_id": "",
                "dataset": "",
            }
        )
        if len(examples) == BATCH:
            collate(examples)
            examples = []
        t4 = time.process_time()
        for key, dt in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            t[key] += dt * 1000 / n
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=30, help="batches of 8 per measurement")
    parser.add_argument("--skip-ray", action="store_true", help="skip the Ray Data measurement")
    parser.add_argument("--ray-only", action="store_true", help="only the Ray Data measurement")
    parser.add_argument("--copies", type=int, default=100, help="copies of the KITTI frames for the Ray Data run")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    aug = Augment("label", CROP)
    tmp = Path(tempfile.mkdtemp(prefix="bench-loader-"))
    results = {}
    for kind in () if args.ray_only else KINDS:
        ann = build(kind, tmp / kind / "src")
        entries = json.loads(ann.read_text())["files"]
        src_rgb, src_depth = source_bytes(ann)
        sizes = {}
        for policy in ("auto", "raw"):
            url = str(tmp / kind / f"store-{policy}")
            ingest("metric3d_json", str(ann), url, workers=0, progress=False, rgb_codec=policy)
            cat = open_store(url).catalog()
            sizes[policy] = (sum(cat["rgb_bytes"].to_pylist()), sum(cat["depth_bytes"].to_pylist()))
        store = open_store(str(tmp / kind / "store-auto"))
        rows = sorted(store.catalog(columns=READ_COLUMNS).to_pylist(), key=lambda r: r["sample_id"])
        ours = _rate(lambda i, s=store, r=rows: load_sample(s, r[i % len(r)], aug, 0, 0, i), args.batches)
        base = _rate(lambda i, e=entries, a=ann: metric3d_style(e[i % len(e)], a.parent, aug, i), args.batches)
        parts = _breakdown(store, rows, aug, args.batches * BATCH)
        results[kind] = {
            "ours": ours,
            "metric3d_style": base,
            "speedup": ours / base,
            "breakdown_ms": parts,
            "source_bytes": src_rgb + src_depth,
            "store_bytes": {p: sum(v) for p, v in sizes.items()},
            "codec": rows[0]["rgb_codec"],
        }
        r = results[kind]
        print(
            f"{kind:9s} ours {ours:6.1f} samples/CPU-s  metric3d-style {base:6.1f}  speedup {ours / base:4.2f}x  "
            f"store/source bytes auto {r['store_bytes']['auto'] / r['source_bytes']:.3f} "
            f"raw {r['store_bytes']['raw'] / r['source_bytes']:.3f}  (rgb codec {r['codec']})"
        )
        print("          ms/sample: " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
    if not args.skip_ray:
        results["ray_data"] = _ray(tmp, aug, args.copies)
    print(json.dumps(results, indent=1, default=float))


def _ray(tmp: Path, aug: Augment, copies: int) -> dict:
    """Wall-clock samples/s of the Ray Data path (2 CPUs) against the in-process path, KITTI-like store."""
    from infra.ray_runtime import init_ray
    from pipelines import iter_torch, training_batches, training_dataset

    ann = build("kitti", tmp / "ray" / "src", copies=copies)  # distinct files: enough rows for many batches
    url = str(tmp / "ray" / "store")
    ingest("metric3d_json", str(ann), url, split="train", workers=0, progress=False)
    kw = {"batch_size": BATCH, "crop_hw": CROP, "cstm": aug.cstm}
    t0 = time.perf_counter()
    n = sum(len(b["sample_id"]) for b in training_batches(url, **kw))
    local = n / (time.perf_counter() - t0)
    init_ray(2)
    t0 = time.perf_counter()
    n, t_first, n_first = 0, 0.0, 0
    for b in iter_torch(training_dataset(url, concurrency=2, **kw), BATCH):
        if not n:
            t_first, n_first = time.perf_counter(), len(b["sample_id"])
        n += len(b["sample_id"])
    t_end = time.perf_counter()
    overall, steady = n / (t_end - t0), (n - n_first) / (t_end - t_first)
    print(
        f"ray data (2 CPUs, 2 loader actors): {overall:.1f} samples/s wall overall, {steady:.1f} after the first "
        f"batch ({t_first - t0:.1f} s start-up); in-process (1 CPU): {local:.1f} samples/s wall; {n} samples"
    )
    return {
        "ray_samples_per_s": overall,
        "ray_steady_samples_per_s": steady,
        "ray_startup_s": t_first - t0,
        "in_process_samples_per_s": local,
        "samples": n,
    }


if __name__ == "__main__":
    main()
