"""Bounded inputs: an image over --max-image-pixels, a file over --max-file-bytes and a decompression bomb are
quarantined before anything decodes them, with a reason naming the limit, and the good samples ingest."""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_adapters_real import pandaset_tree

from ingest import run as ingest_run
from ingest.adapters.cleargrasp import read_depth_exr
from ingest.adapters.ddad import _read_points
from ingest.engine import ingest
from ingest.source import MAX_IMAGE_PIXELS, Source, SourceError
from ingest.synthetic import Camera, generate
from store import open_store
from store.codecs import image_size

pytestmark = pytest.mark.timeout(300)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int) -> bytes:
    """A well-formed 8-bit RGB PNG whose header declares width x height but which holds one row of pixels:
    a few hundred kB that a decoder would inflate into width * height * 3 bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + 3 * width))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _reasons(store: str) -> dict[str, tuple[str, str]]:
    """item key -> (file name, reason)."""
    return {q["item"]: (q["file"].rsplit("/", 1)[-1], q["reason"]) for q in open_store(store).quarantine().to_pylist()}


def test_image_size_reads_headers_only():
    rgb = np.zeros((37, 53, 3), np.uint8)
    for ext in (".png", ".jpg"):
        assert image_size(cv2.imencode(ext, rgb)[1].tobytes()) == (37, 53)
    assert image_size(png_declaring(20_000, 20_000)) == (20_000, 20_000)
    assert image_size(b"P6 not an image we read") is None


@pytest.mark.ray
def test_oversized_image_and_file_are_quarantined_and_the_run_goes_on(tmp_path: Path, ray_runtime, capsys):
    generate(str(tmp_path / "src"), 3, cameras=(Camera("a", 100.0, 64, 48, "kitti", "train"),))
    images = sorted((tmp_path / "src").rglob("image_02/data/*.png"))
    images[1].write_bytes(png_declaring(20_000, 20_000))
    images[2].write_bytes(images[2].read_bytes() + bytes(60_000))  # trailing zeros: still a complete PNG
    store = str(tmp_path / "store")
    argv = ["--dataset", "synthetic", "--src", str(tmp_path / "src"), "--store", store, "--quiet"]
    # Ray workers (2 tasks): the limits travel to them with the source.
    assert ingest_run.main([*argv, "--workers", "2", "--shard-size", "1", "--max-file-bytes", "50000"]) == 0
    assert "ingested 1, already present 0, quarantined 2" in capsys.readouterr().out
    reasons = {file: reason for file, reason in _reasons(store).values()}
    assert reasons[images[1].name] == (
        "image of 20000x20000 pixels (400.0 MP) is over the limit of 100 MP "
        f"(--max-image-pixels {MAX_IMAGE_PIXELS}; raise it to ingest this image)"
    )
    size = images[2].stat().st_size
    assert reasons[images[2].name] == (
        f"file of {size} bytes is over the limit of 50000 bytes (--max-file-bytes 50000; raise it to ingest this file)"
    )
    assert open_store(store).catalog()["frame"].to_pylist() == [images[0].stem]


def test_a_lowered_pixel_limit_refuses_before_decoding(tmp_path: Path):
    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((48, 64, 3), np.uint8))
    assert Source(str(tmp_path)).read_bytes("small.png")
    with pytest.raises(SourceError, match=r"64x48 pixels .* over the limit of 0.003 MP \(--max-image-pixels 3000;"):
        Source(str(tmp_path), max_image_pixels=3000).read_bytes("small.png")


@pytest.mark.real
def test_gzip_bomb_in_pandaset_is_quarantined(real_root: Path, tmp_path: Path):
    src = pandaset_tree(real_root, tmp_path / "pandaset")
    pandaset_tree(real_root, src, "003")
    # 40 MiB of zeros in a 40 kB .gz; the real lidar frames expand to 8 MB, under the lowered 32 MiB limit.
    (src / "003" / "lidar" / "00.pkl.gz").write_bytes(gzip.compress(bytes(40 << 20), compresslevel=9))
    limit = 32 << 20
    store = str(tmp_path / "store")
    s = ingest("pandaset", str(src), store, workers=0, progress=False, max_file_bytes=limit)
    assert (s.ingested, s.quarantined) == (2, 2)
    assert {r["scene"] for r in open_store(store).catalog().to_pylist()} == {"002"}
    for camera in ("front_camera", "left_camera"):
        assert _reasons(store)[f"003/{camera}/00"] == (
            "00.pkl.gz",
            f"gzip content (decompression stopped there) is over the limit of {limit} bytes "
            f"(--max-file-bytes {limit}; raise it to ingest this file)",
        )


def test_npz_and_exr_bombs_are_refused_from_their_headers(tmp_path: Path):
    buf = io.BytesIO()
    np.savez_compressed(buf, data=np.zeros((500_000, 4), np.float32))  # 8 MB declared, 8 kB stored
    (tmp_path / "bomb.npz").write_bytes(buf.getvalue())
    src = Source(str(tmp_path), max_file_bytes=1 << 20)
    with pytest.raises(SourceError, match=r"\.npz content of 8000\d+ bytes is over the limit of 1048576 bytes"):
        _read_points(src, "bomb.npz", [0, 1, 2])
    # An OpenEXR header declaring a 100000 x 100000 window (40 GB of float32 depth) and nothing else.
    window = b"dataWindow\0box2i\0" + struct.pack("<i4i", 16, 0, 0, 99_999, 99_999)
    (tmp_path / "bomb.exr").write_bytes(struct.pack("<ii", 20000630, 2) + window + b"\0")
    with pytest.raises(SourceError, match=r"100000x100000 pixels .* over the limit of 100 MP"):
        read_depth_exr(src, "bomb.exr")
