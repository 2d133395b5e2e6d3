"""Camera constants and the few pinhole facts every part shares."""

from __future__ import annotations

# The canonical focal length of CSTM, in pixels: the value of every model config Metric3D ships.
# This is the only place the number appears.
F_CANONICAL_PX: float = 1000.0


def mean_focal_px(k_px: tuple[float, float, float, float]) -> float:
    """The focal CSTM uses: (fx + fy) / 2, in pixels."""
    return (float(k_px[0]) + float(k_px[1])) / 2.0
