"""python -m ingest.run: read a dataset's native files into a store.

Examples:
  python -m ingest.run --list
  python -m ingest.run --dataset kitti --src /data/kitti --store /data/store --split val
  python -m ingest.run --dataset metric3d_json --src annotations.json --store s3://bucket/store
A re-run skips the samples already committed and finishes the rest; two runs at once never commit a
sample twice. Rows are committed to the store's Delta tables in batches (--commit-rows / --commit-seconds);
each commit is a catalog version. Rejected inputs go to the quarantine table with the file and the reason;
--retry-quarantined reads them again and commits those that now pass (their history stays). A storage
fault (timeouts, throttling, resets) is retried, then stops the run with one line: it is never quarantined.
An input over --max-file-bytes (or a .gz expanding beyond it) or an image over --max-image-pixels is
quarantined before it is decoded. A store's missing bucket is an error unless --create-bucket.
"""

from __future__ import annotations

import argparse
import os
import sys

from ingest.engine import DEFAULT_SHARD_SIZE, ingest
from ingest.registry import all_adapters, get_adapter
from ingest.source import MAX_FILE_BYTES, MAX_IMAGE_PIXELS, SourceUnavailable
from store import StoreError
from store.codecs import RGB_POLICIES
from store.commit import COMMIT_ROWS, COMMIT_SECONDS
from store.fs import parse_storage_options
from store.table import TableIOError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ingest.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--list", action="store_true", help="list the dataset adapters and exit")
    p.add_argument("--dataset", help="adapter name (see --list)")
    p.add_argument("--src", help="the dataset root as its download unpacks (local path or s3://...)")
    p.add_argument("--store", help="store URL (local path or s3://...); created when missing")
    p.add_argument("--split", help="train, val or test (default: every split the adapter knows)")
    p.add_argument("--name", help="dataset name in the store (default: the adapter name)")
    p.add_argument("--limit", type=int, help="ingest only the first N items (sorted by sample id)")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="parallel Ray tasks (default: CPU count; RAY_ADDRESS selects a cluster; 0 = no Ray)",
    )
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="samples per shard (default 64)")
    p.add_argument(
        "--rgb-codec",
        default="auto",
        choices=RGB_POLICIES,
        help="auto (default, chosen by measurement): keep JPEG bytes, PNG -> lossless delta+zstd when within "
        "1.1x its bytes; source: keep the file's bytes; dzstd; raw (zstd only)",
    )
    p.add_argument(
        "--commit-rows",
        type=int,
        default=COMMIT_ROWS,
        help=f"commit once this many rows are staged (default {COMMIT_ROWS}: few large catalog files)",
    )
    p.add_argument(
        "--commit-seconds",
        type=float,
        default=COMMIT_SECONDS,
        help=f"... or once the oldest staged row waited this long (default {COMMIT_SECONDS:g} s)",
    )
    p.add_argument(
        "--retry-quarantined",
        action="store_true",
        help="read the quarantined items of the dataset again and commit those that now pass",
    )
    p.add_argument(
        "--create-bucket",
        action="store_true",
        help="create the store's bucket when it does not exist (without it a missing bucket is an error)",
    )
    p.add_argument(
        "--max-image-pixels",
        type=int,
        default=MAX_IMAGE_PIXELS,
        help=f"quarantine an image whose header declares more pixels (default {MAX_IMAGE_PIXELS:_}), before decoding",
    )
    p.add_argument(
        "--max-file-bytes",
        type=int,
        default=MAX_FILE_BYTES,
        help=f"quarantine a source file bigger than this, or expanding beyond it (default {MAX_FILE_BYTES:_}: 1 GiB)",
    )
    p.add_argument("--storage-options", help='JSON for fsspec/s3fs, e.g. \'{"endpoint_url": "http://127.0.0.1:9000"}\'')
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        for name, adapter in all_adapters().items():
            print(f"{name:16s} {adapter.info.description}")
        return 0
    missing = [f"--{k}" for k in ("dataset", "src", "store") if not getattr(args, k)]
    if missing:
        parser.error(f"{', '.join(missing)} required (or --list)")
    try:
        get_adapter(args.dataset)
        summary = ingest(
            args.dataset,
            args.src,
            args.store,
            split=args.split,
            name=args.name,
            limit=args.limit,
            workers=args.workers,
            shard_size=args.shard_size,
            rgb_codec=args.rgb_codec,
            storage_options=parse_storage_options(args.storage_options),
            progress=not args.quiet,
            retry_quarantined=args.retry_quarantined,
            commit_rows=args.commit_rows,
            commit_seconds=args.commit_seconds,
            create_bucket=args.create_bucket,
            max_image_pixels=args.max_image_pixels,
            max_file_bytes=args.max_file_bytes,
        )
    except (KeyError, FileNotFoundError, StoreError, ValueError, SourceUnavailable, TableIOError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    for line in summary.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
