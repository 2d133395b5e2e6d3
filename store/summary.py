"""python -m store.summary STORE_URL: what a store holds, per dataset and split, what was quarantined, and
the catalog's history (version, time, operation, rows added): the versions `--store-version N` can pin."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from store import StoreError, open_store


def history_lines(store, limit: int = 20) -> list[str]:
    """The newest `limit` catalog commits, one line each."""
    entries = store.history()
    lines = [f"catalog history ({len(entries)} versions, newest first):"]
    lines.append(f"  {'version':>7s}  {'time (UTC)':19s}  {'operation':18s} {'rows added':>10s}")
    for h in entries[:limit]:
        when = datetime.fromtimestamp(h["timestamp"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        operation = h.get("metricdepth.operation") or h.get("operation", "?").lower().replace(" ", "_")
        added = (h.get("operationMetrics") or {}).get(
            "num_added_rows", (h.get("operationMetrics") or {}).get("numAddedRows", 0)
        )
        lines.append(f"  {h['version']:7d}  {when:19s}  {operation:18s} {added:>10}")
    if len(entries) > limit:
        lines.append(f"  ... {len(entries) - limit} older versions")
    return lines


def summarise(url: str, version: int | None = None) -> list[str]:
    store = open_store(url, version=version)
    cat = store.catalog(
        columns=[
            "sample_id",
            "dataset",
            "split",
            "rgb_bytes",
            "depth_bytes",
            "valid_frac",
            "depth_median_m",
            "fx",
            "rgb_codec",
            "depth_codec",
        ]
    )
    for name in ("dataset", "split", "rgb_codec", "depth_codec"):  # read as dictionaries; group on plain strings
        cat = cat.set_column(cat.schema.get_field_index(name), name, cat[name].cast(pa.string()))
    lines = [f"store {url} catalog version {store.version}: {cat.num_rows} samples"]
    if cat.num_rows:
        groups = (
            cat.group_by(["dataset", "split"])
            .aggregate(
                [
                    ("sample_id", "count"),
                    ("rgb_bytes", "sum"),
                    ("depth_bytes", "sum"),
                    ("valid_frac", "mean"),
                    ("depth_median_m", "approximate_median"),
                    ("fx", "min"),
                    ("fx", "max"),
                ]
            )
            .sort_by([("dataset", "ascending"), ("split", "ascending")])
        )
        lines.append(f"  {'dataset':20s} {'split':6s} {'samples':>7s} {'MB':>8s} {'valid':>6s} {'med m':>6s}  fx px")
        for r in groups.to_pylist():
            mb = (r["rgb_bytes_sum"] + r["depth_bytes_sum"]) / 1e6
            lines.append(
                f"  {r['dataset']:20s} {r['split']:6s} {r['sample_id_count']:7d} {mb:8.2f} "
                f"{r['valid_frac_mean']:6.3f} {r['depth_median_m_approximate_median']:6.2f}  "
                f"{r['fx_min']:.1f}-{r['fx_max']:.1f}"
            )
        lines.append(
            f"  rgb codecs {dict(Counter(cat['rgb_codec'].to_pylist()))}, "
            f"depth codecs {dict(Counter(cat['depth_codec'].to_pylist()))}, "
            f"{pc.sum(cat['rgb_bytes']).as_py() / 1e6:.2f} MB rgb"
        )
    q = store.quarantine()
    lines.append(f"quarantine: {q.num_rows} inputs")
    for reason, n in Counter(q["reason"].to_pylist()).most_common(5):
        lines.append(f"  x{n}: {reason}")
    return lines + history_lines(store)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m store.summary", description=__doc__)
    parser.add_argument("store", help="store URL (local path or s3://...)")
    parser.add_argument("--store-version", type=int, help="summarise this catalog version (default: the latest)")
    args = parser.parse_args(argv)
    try:
        print("\n".join(summarise(args.store, args.store_version)))
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
