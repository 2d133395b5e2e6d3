"""Coloured point clouds as binary little-endian PLY: float32 x, y, z (metres) and uint8 red, green, blue.

The layout every viewer reads (MeshLab, CloudCompare, Open3D, Blender). `read_ply` reads back exactly this
layout and refuses others rather than guessing at them.
"""

from __future__ import annotations

import os

import numpy as np

_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
_PROPERTIES = ["property float x", "property float y", "property float z"]
_PROPERTIES += ["property uchar red", "property uchar green", "property uchar blue"]


def _header(n: int) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {n}", *_PROPERTIES, "end_header"]
    return ("\n".join(lines) + "\n").encode("ascii")


def write_ply(path: str | os.PathLike, points_m: np.ndarray, colors: np.ndarray) -> None:
    """Write N points (Nx3 metres, finite) with their Nx3 uint8 colours."""
    points_m, colors = np.asarray(points_m), np.asarray(colors)
    if points_m.ndim != 2 or points_m.shape[1] != 3 or colors.shape != points_m.shape:
        raise ValueError(f"need points Nx3 and colours Nx3; got {points_m.shape} and {colors.shape}")
    if colors.dtype != np.uint8:
        raise TypeError(f"colours must be uint8 (0-255); got {colors.dtype}")
    if not np.all(np.isfinite(points_m)):
        raise ValueError("points must be finite: drop invalid depth before writing a cloud")
    vertices = np.empty(len(points_m), dtype=_VERTEX)
    for i, axis in enumerate("xyz"):
        vertices[axis] = points_m[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        vertices[channel] = colors[:, i]
    with open(path, "wb") as f:
        f.write(_header(len(vertices)))
        f.write(vertices.tobytes())


def read_ply(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(points Nx3 float32 metres, colours Nx3 uint8) from a PLY in the layout `write_ply` writes."""
    with open(path, "rb") as f:
        data = f.read()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise ValueError(f"{os.fspath(path)}: not a PLY file (no 'ply' magic or no end_header)")
    header = data[:end].decode("ascii", errors="replace").splitlines()
    vertex_lines = [line for line in header if line.startswith("element vertex ")]
    expected = ["ply", "format binary_little_endian 1.0", *vertex_lines[:1], *_PROPERTIES]
    if len(vertex_lines) != 1 or header != expected:
        raise ValueError(
            f"{os.fspath(path)}: unsupported PLY layout {header!r}; this reader takes only the binary little-endian "
            "x, y, z float + red, green, blue uchar vertices that eval.ply.write_ply writes"
        )
    n = int(vertex_lines[0].split()[2])
    body = data[end + len(b"end_header\n") :]
    if len(body) != n * _VERTEX.itemsize:
        raise ValueError(f"{os.fspath(path)}: {len(body)} bytes of vertex data for {n} vertices: file truncated?")
    vertices = np.frombuffer(body, dtype=_VERTEX, count=n)
    points = np.stack([vertices[a] for a in "xyz"], axis=1).astype(np.float32)
    colors = np.stack([vertices[c] for c in ("red", "green", "blue")], axis=1).astype(np.uint8)
    return points, colors
