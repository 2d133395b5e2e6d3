"""Ingest throughput and store size, per storage choice, on the real samples.

    python -m bench.ingest [--copies 12]

For KITTI-like (PNG RGB + uint16 PNG depth), NYU-like (JPEG + uint16 PNG) and nuScenes-like (JPEG +
sparse lidar depth) samples (bench.fixtures): ingest samples per CPU-second in one process
(`--workers 0`, after an untimed 4-sample ingest that pays the process's one-off imports), against the floor of only decoding the same source files, and the share of it spent
committing rows to the Delta catalog (measured pessimistically: one commit per 64-sample shard, where
the default batches 16,384 rows per commit); then, per RGB storage
policy, the store's bytes against the source files' bytes and the loader-side read + decode time per
sample against decoding the source files.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402

from bench.fixtures import KINDS, build, source_bytes  # noqa: E402
from ingest.engine import DEFAULT_SHARD_SIZE, ingest  # noqa: E402
from store import open_store  # noqa: E402
from store.store import READ_COLUMNS  # noqa: E402

POLICIES = ("auto", "source", "raw")


def _decode_sources(ann: Path) -> float:
    """CPU seconds per sample to decode the source RGB and depth files (the floor of any ingest)."""
    files = json.loads(ann.read_text())["files"]
    t0 = time.process_time()
    for f in files:
        cv2.imread(str(ann.parent / f["rgb"]), cv2.IMREAD_COLOR)
        cv2.imread(str(ann.parent / f["depth"]), cv2.IMREAD_UNCHANGED)
    return (time.process_time() - t0) / len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=12, help="each real frame this many times, as distinct files")
    parser.add_argument("--reps", type=int, default=3, help="ingest runs per policy (the median is reported)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    out = {}
    for kind in KINDS:
        ann = build(kind, tmp / kind / "src", copies=args.copies)
        n_files = len(json.loads(ann.read_text())["files"])
        floor = min(_decode_sources(ann) for _ in range(5))
        src_bytes = sum(source_bytes(ann))
        row = {"decode_floor_ms": floor * 1000, "policies": {}}
        # Untimed: a first ingest in a process also pays one-off imports and set-up (~0.4 s, more than a third
        # of these 36 samples' time); the figure is the steady state a long ingest runs at.
        ingest("metric3d_json", str(ann), str(tmp / kind / "warm-up"), name=kind, workers=0, progress=False, limit=4)
        cpu_s: dict[str, list[float]] = {policy: [] for policy in POLICIES}
        commit_share: dict[str, list[float]] = {policy: [] for policy in POLICIES}
        for rep in range(args.reps):  # interleaved: each policy once per round, the median of the rounds
            for policy in POLICIES:
                url = str(tmp / kind / f"store-{policy}-{rep}")
                t0 = time.process_time()
                summary = ingest(
                    "metric3d_json",
                    str(ann),
                    url,
                    name=kind,
                    workers=0,
                    progress=False,
                    rgb_codec=policy,
                    commit_rows=DEFAULT_SHARD_SIZE,
                )
                cpu_s[policy].append(time.process_time() - t0)
                commit_share[policy].append(summary.commit_seconds / cpu_s[policy][-1])
        for policy in POLICIES:
            cpu = statistics.median(cpu_s[policy])
            url = str(tmp / kind / f"store-{policy}-0")
            store = open_store(url)
            cat = store.catalog(columns=READ_COLUMNS)
            rows = cat.to_pylist()
            t0 = time.process_time()
            for _ in range(3):
                for r in rows:
                    store.read_arrays(r)
            read_ms = (time.process_time() - t0) / (3 * len(rows)) * 1000
            stored = sum(cat["rgb_bytes"].to_pylist()) + sum(cat["depth_bytes"].to_pylist())
            row["policies"][policy] = {
                "ingest_samples_per_cpu_s": n_files / cpu,
                "commit_share": statistics.median(commit_share[policy]),
                "store_over_source_bytes": stored / src_bytes,
                "read_decode_ms": read_ms,
                "rgb_codecs": sorted(set(cat["rgb_codec"].cast("string").to_pylist())),
            }
        out[kind] = row
        print(f"{kind}: decode-only floor {1 / floor:.1f} samples/CPU-s ({floor * 1000:.2f} ms/sample)")
        for policy, p in row["policies"].items():
            print(
                f"  {policy:6s} ingest {p['ingest_samples_per_cpu_s']:6.1f} samples/CPU-s  "
                f"store/source bytes {p['store_over_source_bytes']:.3f}  read+decode {p['read_decode_ms']:.2f} ms "
                f"(source decode {floor * 1000:.2f} ms)  commits {p['commit_share'] * 100:.1f} % of ingest CPU  "
                f"rgb {p['rgb_codecs']}"
            )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
