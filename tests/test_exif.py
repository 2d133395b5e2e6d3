"""Focal length from EXIF on JPEGs written here with known tags; orientation; the warned default."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from eval.exif import (
    EXIF_IFD,
    FOCAL_LENGTH,
    FOCAL_LENGTH_35MM,
    FOCAL_PLANE_RESOLUTION_UNIT,
    FOCAL_PLANE_X_RESOLUTION,
    ORIENTATION,
    PIXEL_X_DIMENSION,
    choose_focal_px,
    focal_px_from_exif,
    load_photo,
)


def write_jpeg(
    path: Path, exif_tags: dict[int, object], size_wh: tuple[int, int] = (300, 200), orientation: int | None = None
) -> Path:
    """A JPEG whose stored top-left 60 x 60 block is red on blue, with Exif sub-IFD `exif_tags` (id -> value)."""
    img = Image.new("RGB", size_wh, (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 60, 60))
    exif = Image.Exif()
    if orientation is not None:
        exif[ORIENTATION] = orientation
    sub = exif.get_ifd(EXIF_IFD)
    sub.update(exif_tags)
    img.save(path, "JPEG", exif=exif, quality=95)
    return path


def tags(**named: object) -> dict[int, object]:
    """Exif sub-IFD tags by short name."""
    ids = {
        "f35": FOCAL_LENGTH_35MM,
        "f_mm": FOCAL_LENGTH,
        "xres": FOCAL_PLANE_X_RESOLUTION,
        "unit": FOCAL_PLANE_RESOLUTION_UNIT,
        "pixel_x": PIXEL_X_DIMENSION,
    }
    return {ids[k]: v for k, v in named.items()}


def test_written_tags_round_trip_through_pillow(tmp_path: Path) -> None:
    written = tags(f35=24, f_mm=IFDRational(43, 10), xres=IFDRational(2540), unit=2)
    path = write_jpeg(tmp_path / "a.jpg", written, orientation=6)
    exif = Image.open(path).getexif()
    sub = exif.get_ifd(EXIF_IFD)
    assert exif[ORIENTATION] == 6
    assert sub[FOCAL_LENGTH_35MM] == 24 and sub[FOCAL_PLANE_RESOLUTION_UNIT] == 2
    assert float(sub[FOCAL_LENGTH]) == 4.3 and float(sub[FOCAL_PLANE_X_RESOLUTION]) == 2540.0


def test_35mm_equivalent_by_the_diagonal(tmp_path: Path) -> None:
    # 3:2, 300 x 200: diagonal 360.555 px; 24 mm * 360.555 / 43.2666 mm (the 36 x 24 mm diagonal) = 200 px, the
    # long-side rule's 24 / 36 * 300 too.
    path = write_jpeg(tmp_path / "a.jpg", tags(f35=24), (300, 200))
    assert focal_px_from_exif(path) == (pytest.approx(200.0), "exif_35mm")
    assert focal_px_from_exif(path.read_bytes()) == (pytest.approx(200.0), "exif_35mm")
    # 4:3, 400 x 300 (a phone's shape): diagonal 500 px; 26 * 500 / 43.2666 = 300.4626 px (the long-side rule
    # would give 26 / 36 * 400 = 288.89, 3.9 % less). Portrait or landscape, the diagonal is the same.
    for size in ((400, 300), (300, 400)):
        path = write_jpeg(tmp_path / f"{size[0]}.jpg", tags(f35=26), size)
        assert focal_px_from_exif(path) == (pytest.approx(300.4626, abs=1e-4), "exif_35mm")
        assert focal_px_from_exif(path)[0] == pytest.approx(26 * 500 / math.sqrt(36**2 + 24**2), rel=1e-12)


def test_focal_plane_wins_over_the_35mm_equivalent(tmp_path: Path) -> None:
    # 4 mm at 2540 px per inch = 100 px per mm -> 400 px, whatever the 35 mm equivalent says (24 mm -> 200 px).
    path = write_jpeg(tmp_path / "a.jpg", tags(f35=24, f_mm=IFDRational(4), xres=IFDRational(2540), unit=2))
    assert focal_px_from_exif(path) == (pytest.approx(400.0), "exif_focal_plane")
    # An untrusted focal-plane unit leaves the 35 mm equivalent to decide.
    odd_unit = write_jpeg(tmp_path / "b.jpg", tags(f35=24, f_mm=IFDRational(4), xres=IFDRational(2540), unit=1))
    assert focal_px_from_exif(odd_unit) == (pytest.approx(200.0), "exif_35mm")


def test_focal_plane_resolution_in_inches(tmp_path: Path) -> None:
    # 4 mm lens, 2540 px per inch = 100 px per mm on the sensor -> 400 px
    path = write_jpeg(tmp_path / "a.jpg", tags(f_mm=IFDRational(4), xres=IFDRational(2540), unit=2))
    assert focal_px_from_exif(path) == (pytest.approx(400.0), "exif_focal_plane")


def test_focal_plane_unit_defaults_to_inches(tmp_path: Path) -> None:
    path = write_jpeg(tmp_path / "a.jpg", tags(f_mm=IFDRational(4), xres=IFDRational(2540)))
    assert focal_px_from_exif(path) == (pytest.approx(400.0), "exif_focal_plane")


def test_focal_plane_resolution_in_centimetres(tmp_path: Path) -> None:
    # 5 mm lens, 200 px per cm = 20 px per mm -> 100 px
    path = write_jpeg(tmp_path / "a.jpg", tags(f_mm=IFDRational(5), xres=IFDRational(200), unit=3))
    assert focal_px_from_exif(path) == (pytest.approx(100.0), "exif_focal_plane")


def test_focal_plane_rescaled_to_a_downsized_image(tmp_path: Path) -> None:
    # Recorded 600 px wide, stored 300 px wide: the sensor resolution counts twice the stored pixels.
    path = write_jpeg(tmp_path / "a.jpg", tags(f_mm=IFDRational(4), xres=IFDRational(2540), unit=2, pixel_x=600))
    assert focal_px_from_exif(path) == (pytest.approx(200.0), "exif_focal_plane")


def test_unknown_unit_and_zero_values_are_not_trusted(tmp_path: Path) -> None:
    odd_unit = write_jpeg(tmp_path / "a.jpg", tags(f_mm=IFDRational(4), xres=IFDRational(2540), unit=1))
    assert focal_px_from_exif(odd_unit) == (None, "none")
    zeros = write_jpeg(tmp_path / "b.jpg", tags(f35=0, f_mm=IFDRational(0, 0), xres=IFDRational(2540)))
    assert focal_px_from_exif(zeros) == (None, "none")


def test_orientation_6_loads_portrait_with_the_same_focal(tmp_path: Path) -> None:
    path = write_jpeg(tmp_path / "a.jpg", tags(f35=24), (300, 200), orientation=6)
    rgb, info = load_photo(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (300, 200, 3)  # stored landscape, viewed portrait
    assert (info.orientation, info.stored_wh) == (6, (300, 200))
    assert (info.f_px, info.focal_source) == (pytest.approx(200.0), "exif_35mm")  # the diagonal is the same
    # Orientation 6 = rotate 90 degrees clockwise to view: the stored top-left red block ends up top-right.
    assert rgb[10, -10, 0] > 200 and rgb[10, -10, 2] < 50
    assert rgb[10, 10, 0] < 50 and rgb[10, 10, 2] > 200


def test_no_exif_gives_none_then_the_loud_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "plain.jpg"
    Image.new("RGB", (300, 200)).save(path)
    rgb, info = load_photo(path)
    assert (info.f_px, info.focal_source, info.orientation) == (None, "none", 1)
    with pytest.warns(UserWarning, match="no focal length in the photo's EXIF"):
        f_px, source = choose_focal_px(rgb.shape[:2], None, info.f_px, info.focal_source)
    # 60 degrees across the long side: f = 150 / tan(30 deg) = 0.866 * 300
    assert (f_px, source) == (pytest.approx(150 / math.tan(math.radians(30))), "default_fov")
    assert f_px == pytest.approx(0.8660254 * 300)
    assert "WARNING: no focal length" in capsys.readouterr().err


def test_given_focal_beats_exif_and_must_be_positive() -> None:
    assert choose_focal_px((200, 300), 512.0, 200.0, "exif_35mm") == (512.0, "given")
    assert choose_focal_px((200, 300), None, 200.0, "exif_35mm") == (200.0, "exif_35mm")
    with pytest.raises(ValueError, match="must be > 0"):
        choose_focal_px((200, 300), 0.0)


def test_unreadable_photo_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.jpg: cannot read the photo .*give a JPEG or PNG"):
        load_photo(bad)
    with pytest.raises(ValueError, match=r"missing\.jpg: cannot read the photo"):
        focal_px_from_exif(tmp_path / "missing.jpg")
