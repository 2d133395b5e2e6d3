"""python -m ingest.run: read a dataset's native files into a store.

Examples:
  python -m ingest.run --list
  python -m ingest.run --dataset kitti --src /data/kitti --store /data/store --split val
  python -m ingest.run --dataset metric3d_json --src annotations.json --store s3://bucket/store
A re-run skips the shards already committed and finishes the rest. Rejected inputs go to the store's
quarantine table with the file and the reason; the summary counts them.
"""

from __future__ import annotations

import argparse
import os
import sys

from ingest.engine import DEFAULT_SHARD_SIZE, ingest
from ingest.registry import all_adapters, get_adapter
from store import StoreError
from store.codecs import RGB_POLICIES
from store.fs import parse_storage_options


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
        )
    except (KeyError, FileNotFoundError, StoreError, ValueError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    for line in summary.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
