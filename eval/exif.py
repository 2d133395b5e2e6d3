"""A photo's pixels and its focal length in pixels, from EXIF, for metric inference on arbitrary photos.

Metric depth from one image needs the focal length in pixels of *that* image. In order of preference:

1. FocalLength (0x920A, mm) with FocalPlaneXResolution (0xA20E, pixels per unit on the sensor) and
   FocalPlaneResolutionUnit (0xA210: 2 = inch = 25.4 mm, the EXIF default when absent; 3 = cm = 10 mm):
   f_px = f_mm * resolution / unit_mm. The resolution refers to the image as the camera recorded it, whose width
   is PixelXDimension (0xA002) when present: f_px is rescaled to the stored width when the two differ (a photo
   downsized by software that kept the tags). Other units are not trusted. Pixels are taken as square, so this
   is independent of the orientation. Preferred: it measures this sensor, where the 35 mm equivalent is a
   rounded, whole-millimetre conversion.
2. FocalLengthIn35mmFilm (Exif tag 0xA405, mm), by the diagonal rule, the usual definition of a 35 mm equivalent
   (crop factor = ratio of the diagonals): the angle of view across the diagonal is kept, so
   f_px = f35 * sqrt(W^2 + H^2) / 43.27, with 43.27 mm = sqrt(36^2 + 24^2) the diagonal of a 36 x 24 mm frame.
   For 3:2 images this equals f35 / 36 * long side; for 4:3 images (most phones) it is 4 % more. The diagonal
   does not change with EXIF orientation, so a rotated photo gets the same focal.
3. Nothing: `choose_focal_px` falls back to DEFAULT_FOV_X_DEG and warns loudly (warnings.warn and stderr).

`load_photo` applies the EXIF orientation before anything else (PIL.ImageOps.exif_transpose), so the pixels a
model sees are the photo as it is meant to be viewed.
"""

from __future__ import annotations

import io
import math
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

EXIF_IFD = 0x8769
ORIENTATION = 0x0112
FOCAL_LENGTH = 0x920A
FOCAL_LENGTH_35MM = 0xA405
FOCAL_PLANE_X_RESOLUTION = 0xA20E
FOCAL_PLANE_RESOLUTION_UNIT = 0xA210
PIXEL_X_DIMENSION = 0xA002

FILM_35MM_DIAGONAL_MM = math.hypot(36.0, 24.0)  # 43.27 mm, the diagonal of a 36 x 24 mm frame
FOCAL_PLANE_UNIT_MM = {2: 25.4, 3: 10.0}  # EXIF 2.3: 2 = inch, 3 = centimetre
FOCAL_PLANE_DEFAULT_UNIT = 2

# When a photo says nothing about its focal: a 60 degree field of view across the long side,
# f_px = (long / 2) / tan(30 deg) = 0.866 * long side (a 31 mm equivalent, between a phone's main camera,
# about 26 mm, and a 50 mm normal lens). Metric depth scales with this guess, hence the warning.
DEFAULT_FOV_X_DEG = 60.0


@dataclass(frozen=True)
class PhotoInfo:
    """What `load_photo` learned: the focal from EXIF (None if absent), where it came from, the orientation tag
    (1 = as stored) and the stored size (width, height) before the orientation was applied."""

    f_px: float | None
    focal_source: str
    orientation: int
    stored_wh: tuple[int, int]


def _open(path_or_bytes: str | os.PathLike | bytes) -> Image.Image:
    name = "<bytes>" if isinstance(path_or_bytes, bytes) else os.fspath(path_or_bytes)
    try:
        img = Image.open(io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes)
        img.load()  # decode now, so a truncated file fails here with its name, not later
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(
            f"{name}: cannot read the photo ({e}); give a JPEG or PNG file (convert HEIC/RAW first)"
        ) from e
    return img


def _positive(value: Any) -> float | None:
    """A tag value as a positive finite float, else None (0 and 0/0 rationals mean 'unknown' in EXIF)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _focal_from_image(img: Image.Image) -> tuple[float | None, str]:
    stored_w, stored_h = img.size
    tags = img.getexif().get_ifd(EXIF_IFD)
    f_mm = _positive(tags.get(FOCAL_LENGTH))
    resolution = _positive(tags.get(FOCAL_PLANE_X_RESOLUTION))
    unit_mm = FOCAL_PLANE_UNIT_MM.get(tags.get(FOCAL_PLANE_RESOLUTION_UNIT, FOCAL_PLANE_DEFAULT_UNIT))
    if f_mm is not None and resolution is not None and unit_mm is not None:
        f_px = f_mm * resolution / unit_mm  # pixels of the image as recorded
        recorded_w = _positive(tags.get(PIXEL_X_DIMENSION)) or stored_w
        return f_px * stored_w / recorded_w, "exif_focal_plane"
    f35 = _positive(tags.get(FOCAL_LENGTH_35MM))
    if f35 is not None:
        return f35 * math.hypot(stored_w, stored_h) / FILM_35MM_DIAGONAL_MM, "exif_35mm"
    return None, "none"


def focal_px_from_exif(path_or_bytes: str | os.PathLike | bytes) -> tuple[float | None, str]:
    """(f_px, source) from a photo's EXIF; source is "exif_35mm", "exif_focal_plane" or "none" (f_px None)."""
    img = _open(path_or_bytes)
    return _focal_from_image(img)


def load_photo(path: str | os.PathLike | bytes) -> tuple[np.ndarray, PhotoInfo]:
    """(rgb uint8 HxWx3 upright per its EXIF orientation, PhotoInfo)."""
    img = _open(path)
    f_px, source = _focal_from_image(img)  # from the stored image: both rules are orientation independent
    info = PhotoInfo(f_px, source, int(img.getexif().get(ORIENTATION, 1)), img.size)
    upright = ImageOps.exif_transpose(img)
    return np.asarray(upright.convert("RGB"), dtype=np.uint8), info


def default_focal_px(hw: tuple[int, int]) -> float:
    """The focal of a DEFAULT_FOV_X_DEG field of view across the long side of an H x W image, pixels."""
    return max(hw) / 2.0 / math.tan(math.radians(DEFAULT_FOV_X_DEG) / 2.0)


def choose_focal_px(
    hw: tuple[int, int],
    f_px_given: float | None = None,
    exif_f_px: float | None = None,
    exif_source: str = "none",
) -> tuple[float, str]:
    """The focal to use, pixels, and its source: given (e.g. --f-px) > EXIF > the default with a loud warning."""
    if f_px_given is not None:
        if not f_px_given > 0:
            raise ValueError(f"the focal length must be > 0 pixels; got {f_px_given}")
        return float(f_px_given), "given"
    if exif_f_px is not None:
        return float(exif_f_px), exif_source
    f_px = default_focal_px(hw)
    message = (
        f"no focal length in the photo's EXIF: assuming a {DEFAULT_FOV_X_DEG:g} degree field of view across the "
        f"long side (f = {f_px:.1f} px). Metric depth scales with this guess; pass --f-px for real distances"
    )
    warnings.warn(message, UserWarning, stacklevel=2)
    print(f"WARNING: {message}", file=sys.stderr)
    return f_px, "default_fov"
