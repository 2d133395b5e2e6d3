"""The evaluation report on a tiny store: provenance, the tables (mean over benchmarks by hand), baselines only
where they add information, escaping, figures, and the HTML as headless Chromium renders it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime
from html.parser import HTMLParser
from importlib import metadata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from PIL import Image

from eval.report import COLUMNS, _grown
from eval.run import evaluate
from model import build_model, get_model_config, save_checkpoint
from model.device import resolve_device
from pipelines import catalog_digest
from store import open_store

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = ("synthetic_kitti", "synthetic_nyu")
LIMIT = 3


@pytest.fixture(scope="module")
def report(tiny_store: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One evaluation of a model whose name holds markup, with both baselines; stderr captured (not a terminal)."""
    root = tmp_path_factory.mktemp("report")
    torch.manual_seed(0)
    model = build_model(get_model_config("metric3d_tiny"))
    with torch.no_grad():  # the zero-initialised output layer predicts one depth everywhere: let the maps vary
        model.head[-1].weight.normal_(0.0, 0.5)
    ckpt = str(root / "m<script>alert(1)</script>.pt".replace("/", "_"))
    save_checkpoint(ckpt, model, {"train_datasets": ["synthetic_kitti"]})
    out = root / "report"
    stderr = io.StringIO()
    started = datetime.now().astimezone()
    with contextlib.redirect_stderr(stderr):
        results = evaluate(
            [ckpt], tiny_store, ["synthetic_kitti:val", "synthetic_nyu"], out, ["constant", "oracle"], limit=LIMIT
        )
    doc = json.loads((out / "report.json").read_text())
    return {"out": out, "ckpt": ckpt, "results": results, "doc": doc, "stderr": stderr.getvalue(), "started": started}


def _scored_rows(store_url: str) -> pa.Table:
    """The rows eval.run scores here, found independently: per benchmark its split, sorted by id, the first LIMIT."""
    cat = open_store(store_url).catalog()
    parts = []
    for dataset, split in (("synthetic_kitti", "val"), ("synthetic_nyu", "test")):
        mine = cat.filter(
            pc.and_(pc.equal(cat["dataset"].cast("string"), dataset), pc.equal(cat["split"].cast("string"), split))
        )
        parts.append(mine.sort_by("sample_id").slice(0, LIMIT))
    return pa.concat_tables(parts).combine_chunks()  # catalog_digest joins ids per chunk: one chunk, as eval.run


def test_provenance(report: dict, tiny_store: str) -> None:
    prov = report["doc"]["provenance"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    assert prov["git_commit"] == head.stdout.strip()
    assert isinstance(prov["git_dirty"], bool)
    store = open_store(tiny_store)
    rows = _scored_rows(tiny_store)
    assert prov["store"] == {
        "uri": str(Path(tiny_store).resolve()),
        "version": store.version,
        "rows_digest": catalog_digest(rows),
    }
    kitti = rows.slice(0, LIMIT)
    assert prov["benchmarks"]["synthetic_kitti"] == {
        "split": "val",
        "protocol": "default_synthetic",
        "crop": None,
        "depth_range_m": [1e-3, 80.0],
        "metric_clip_m": [1e-3, 80.0],
        "source": "default for synthetic: no crop, 0.001-80.0 m",
        "n_rows": LIMIT,
        "rows_digest": catalog_digest(kitti),
    }
    assert prov["benchmarks"]["synthetic_nyu"]["split"] == "test"
    assert prov["benchmarks"]["synthetic_nyu"]["protocol"] == "default_synthetic"
    assert prov["models"] == [
        {
            "uri": report["ckpt"],
            "model_id": None,
            "registered_model": None,
            "version": None,
            "run_id": None,
            "train_datasets": ["synthetic_kitti"],
            "train_store": None,
            "train_store_version": None,
        }
    ]
    constant = next(r["model"] for r in report["results"] if r["model"].startswith("constant("))
    assert prov["baselines"][f"{report['ckpt']} + oracle scale"] == {"kind": "oracle", "of": report["ckpt"]}
    assert prov["baselines"][constant]["kind"] == "constant"
    packages = ("metricdepth", "torch", "timm", "numpy", "mlflow", "ray", "deltalake")
    assert prov["packages"] == {p: metadata.version(p) for p in packages}
    assert prov["command"] == sys.argv
    assert report["started"] <= datetime.fromisoformat(prov["time_utc"]) <= datetime.now().astimezone()
    assert prov["host"] == platform.node()
    settings = report["doc"]["settings"]
    assert settings["scale"]["name"] == "fit" and (settings["device"], settings["autocast"]) == (
        str(resolve_device("auto")),
        "off",
    )


def test_tables_have_one_row_per_model_and_benchmark_and_the_mean(report: dict) -> None:
    model, results, tables = report["ckpt"], report["doc"]["results"], report["doc"]["tables"]
    constant = next(r["model"] for r in results if r["model"].startswith("constant("))
    oracle = f"{model} + oracle scale"
    by = {(r["model"], r["benchmark"], r["mode"]): r for r in results}
    # The oracle's rows are the model's median (metric, median) and lsq rows: shown once, as the aligned median.
    for b in BENCHMARKS:
        assert by[(oracle, b, "metric")]["metrics"] == by[(model, b, "median")]["metrics"]
        assert by[(oracle, b, "lsq")]["metrics"] == by[(model, b, "lsq")]["metrics"]

    def shown(table: str) -> list[tuple]:
        return [(r["row"], r["model"], r.get("benchmark"), r["label"]) for r in tables[table]]

    assert shown("metric") == [
        ("benchmark", model, "synthetic_kitti", "metric"),
        ("benchmark", model, "synthetic_nyu", "metric"),
        ("mean", model, None, "metric"),
        ("benchmark", constant, "synthetic_kitti", "metric"),
        ("benchmark", constant, "synthetic_nyu", "metric"),
        ("mean", constant, None, "metric"),
    ]
    folded = "median = oracle scale"
    assert shown("aligned") == [
        ("benchmark", model, "synthetic_kitti", folded),
        ("benchmark", model, "synthetic_nyu", folded),
        ("mean", model, None, folded),
        ("benchmark", model, "synthetic_kitti", "lsq"),
        ("benchmark", model, "synthetic_nyu", "lsq"),
        ("mean", model, None, "lsq"),
        # The constant's lsq rows have no number (lsq of a constant is undefined): not shown.
        ("benchmark", constant, "synthetic_kitti", "median"),
        ("benchmark", constant, "synthetic_nyu", "median"),
        ("mean", constant, None, "median"),
    ]
    # Each row's numbers are the harness's; each mean is the plain mean of the per-benchmark numbers.
    for table in ("metric", "aligned"):
        for r in tables[table]:
            if r["row"] == "benchmark":
                assert r["metrics"] == by[(r["model"], r["benchmark"], r["mode"])]["metrics"]
            else:
                assert r["benchmarks"] == list(BENCHMARKS)
                assert set(r["metrics"]) == set(COLUMNS)
                for c in COLUMNS:
                    a, b = (by[(r["model"], bench, r["mode"])]["metrics"][c] for bench in BENCHMARKS)
                    assert r["metrics"][c] == (a + b) / 2
    md = (report["out"] / "report.md").read_text()
    mean_abs_rel = next(r for r in tables["metric"] if r["row"] == "mean" and r["model"] == model)["metrics"]["abs_rel"]
    assert "| **mean over 2 benchmarks** |" in md and f"**{mean_abs_rel:.4f}**" in md
    assert f"{constant} on synthetic_kitti, lsq: 3 alignment_undefined of 3 images" in md
    assert "oracle scale" not in "".join(line for line in md.splitlines() if line.startswith(f"| {constant}"))


def test_timings_and_figures(report: dict) -> None:
    doc, out = report["doc"], report["out"]
    # One timing row per model and benchmark (baselines compute nothing worth timing), one entry per image.
    assert [(t["model"], t["benchmark"], t["images"]) for t in doc["timings"]] == [
        (report["ckpt"], b, LIMIT) for b in BENCHMARKS
    ]
    assert all(len(t["per_image_ms"]) == LIMIT and min(t["per_image_ms"]) > 0 for t in doc["timings"])
    files = [f["file"] for f in doc["figures"]]
    assert files == [
        f"figures/{i:02d}_{b}_{kind}.png"
        for i, b in enumerate(BENCHMARKS)
        for kind in ("samples", "error_vs_depth", "scale_ratio")
    ] + ["figures/timings.png"]
    for f in files:
        with Image.open(out / f) as im:
            assert im.width > 300 and im.height > 150
    # Progress bars only on a terminal: the captured stderr is not one.
    assert "image/s" not in report["stderr"] and "%|" not in report["stderr"]


def test_sparse_ground_truth_is_grown_to_show() -> None:
    depth = np.zeros((20, 20), np.float32)
    depth[10, 10] = 7.0
    shown = _grown(depth, depth > 0)
    assert np.isnan(shown).sum() == 400 - 25 and (shown[8:13, 8:13] == 7.0).all()
    wide = np.zeros((40, 1000), np.float32)
    wide[20, 500] = 3.0
    assert (~np.isnan(_grown(wide, wide > 0))).sum() == 11 * 11  # W/100 px, odd
    dense = np.full((4, 4), 2.0, np.float32)
    assert (_grown(dense, dense > 0) == 2.0).all()


def test_names_are_escaped(report: dict) -> None:
    html = (report["out"] / "report.html").read_text()
    assert "<script" not in html
    assert "m&lt;script&gt;alert(1)&lt;_script&gt;.pt" in html
    md = (report["out"] / "report.md").read_text()
    assert "<script" not in md and "m&lt;script&gt;alert(1)&lt;_script&gt;.pt" in md


class _Page(HTMLParser):
    """Section ids, the rows (cells) of each table by id, and image sources of a rendered DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id") or "")
        elif tag == "table":
            self._table = a.get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(a.get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _chromium() -> str:
    """Debian's chromium, installed here when missing and we may (as CI does); skipped only when that is impossible."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    t0 = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:  # a stale package index: refresh once
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=300)
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0 or not shutil.which("chromium"):
        pytest.skip(f"chromium could not be installed: {done.stderr.strip()[-300:]}")
    print(f"installed chromium in {time.monotonic() - t0:.0f} s")
    return shutil.which("chromium")


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a first run installs chromium
def test_html_renders_in_headless_chromium(report: dict, tmp_path: Path) -> None:
    chromium = _chromium()
    page = report["out"] / "report.html"
    base = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True)
    shot = tmp_path / "report.png"
    subprocess.run(
        [*base, f"--screenshot={shot}", "--window-size=1400,2000", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    print(f"screenshot: {shot}")
    parsed = _Page()
    parsed.feed(dom.stdout)
    assert parsed.sections == ["provenance", "metric", "aligned", "domain", "timings", "figures", "excluded"]
    model = report["ckpt"]
    metric = parsed.tables["metric-table"]
    assert metric[0][:6] == ["model", "benchmark", "split", "zero-shot or in-domain", "n / images", "left out"]
    assert [row[:5] for row in metric[1:3]] == [
        [model, "synthetic_kitti", "val", "in-domain", "3 / 3"],
        [model, "synthetic_nyu", "test", "zero-shot", "3 / 3"],
    ]
    assert metric[3][:2] == [model, "mean over 2 benchmarks"] and len(metric) == 1 + 6
    aligned = parsed.tables["aligned-table"]
    assert [row[3] for row in aligned[1:4]] == ["median = oracle scale"] * 3 and len(aligned) == 1 + 9
    run = dict(parsed.tables["provenance-run"])  # key / value rows, no heading row
    assert run["git commit"].startswith(report["doc"]["provenance"]["git_commit"])
    assert run["catalog version"] == str(report["doc"]["provenance"]["store"]["version"])
    assert [row[0] for row in parsed.tables["provenance-benchmarks"][1:]] == list(BENCHMARKS)
    # Every image the page names exists and decodes; the screenshot is a real page, not a blank one.
    assert len(parsed.images) == 3 * len(BENCHMARKS) + 1
    for src in parsed.images:
        with Image.open(report["out"] / src) as im:
            assert im.width > 0 and im.height > 0
    with Image.open(shot) as im:
        assert im.size == (1400, 2000)
        gray = np.asarray(im.convert("L"), dtype=np.float32)
    assert gray.std() > 10 and (gray < 128).mean() > 0.01  # text and figures, not a white page
