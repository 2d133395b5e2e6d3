"""Photo inference and measuring, driven by fake models with known depth: files, units, intrinsics, distances; and
how DepthNet.infer sizes a photo for the network (native scale: padded to the stride, cropped back exactly)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from eval import infer, measure
from eval.exif import EXIF_IFD, FOCAL_LENGTH_35MM
from eval.ply import read_ply, write_ply
from model import build_model, get_model_config


class FakeModel:
    """The infer shape: returns a fixed depth map (a constant or an HxW array) and its exact backprojection with
    the intrinsics it is handed, which it records (eval.infer backprojects itself; points_m is the contract's)."""

    def __init__(self, depth_m: float | np.ndarray) -> None:
        self.depth_m = depth_m
        self.k_px: tuple[float, float, float, float] | None = None

    def infer(self, rgb: np.ndarray, k_px: tuple[float, float, float, float]) -> dict[str, np.ndarray]:
        self.k_px = k_px
        h, w = rgb.shape[:2]
        depth = np.broadcast_to(np.asarray(self.depth_m, dtype=np.float32), (h, w))
        fx, fy, cx, cy = k_px
        u, v = np.meshgrid(np.arange(w), np.arange(h))
        points = np.stack([(u - cx) * depth / fx, (v - cy) * depth / fy, depth], axis=-1)
        return {"depth_m": depth.copy(), "points_m": points.astype(np.float32)}


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> list[FakeModel]:
    """eval.models.load_depth_model patched: every load wraps a plane at 4 m, kept for inspection."""
    from eval import models

    loaded: list[FakeModel] = []

    def load_depth_model(uri: str, device: str = "auto") -> models.Loaded:
        assert uri == "fake://plane" and device == "auto"
        loaded.append(FakeModel(4.0))
        return models.Loaded(uri, loaded[-1], train_datasets=None)

    monkeypatch.setattr(models, "load_depth_model", load_depth_model)
    return loaded


def photo(path: Path, size_wh: tuple[int, int] = (600, 400), f35: int | None = None) -> Path:
    """A noise JPEG, with a 35 mm equivalent focal in its EXIF when f35 is given."""
    exif = Image.Exif()
    if f35 is not None:
        exif.get_ifd(EXIF_IFD)[FOCAL_LENGTH_35MM] = f35
    pixels = np.random.default_rng(0).integers(0, 256, (size_wh[1], size_wh[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, "JPEG", exif=exif)
    return path


def test_ply_round_trip_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    points = rng.normal(0, 30, (1000, 3)).astype(np.float32)
    colors = rng.integers(0, 256, (1000, 3), dtype=np.uint8)
    write_ply(tmp_path / "c.ply", points, colors)
    back_points, back_colors = read_ply(tmp_path / "c.ply")
    assert back_points.dtype == np.float32 and back_colors.dtype == np.uint8
    np.testing.assert_array_equal(back_points, points)
    np.testing.assert_array_equal(back_colors, colors)
    assert (tmp_path / "c.ply").read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\nelement vertex 1000\n")
    write_ply(tmp_path / "empty.ply", np.zeros((0, 3)), np.zeros((0, 3), np.uint8))
    assert read_ply(tmp_path / "empty.ply")[0].shape == (0, 3)


def test_ply_refusals(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be finite"):
        write_ply(tmp_path / "c.ply", np.array([[0.0, np.nan, 1.0]]), np.zeros((1, 3), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        write_ply(tmp_path / "c.ply", np.zeros((1, 3)), np.zeros((1, 3)))
    ascii_ply = tmp_path / "ascii.ply"
    ascii_ply.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nend_header\n")
    with pytest.raises(ValueError, match=r"ascii\.ply: unsupported PLY layout"):
        read_ply(ascii_ply)


def test_plane_at_4_m_with_f_500_pixels_250_apart_are_2_m_apart() -> None:
    rgb = np.zeros((400, 600, 3), np.uint8)
    k_px = infer.centred_k_px((400, 600), 500.0)
    _, points = infer.predict(FakeModel(4.0), rgb, k_px)
    assert measure.distance_m(points, (100, 200), (350, 200)) == pytest.approx(2.0, abs=1e-6)
    # 150 px across and 200 px down: 1.2 m and 1.6 m, so 2.0 m apart
    assert measure.distance_m(points, (100, 100), (250, 300)) == pytest.approx(2.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"pixel \(600, 0\) is outside the 600x400 image"):
        measure.distance_m(points, (600, 0), (0, 0))
    points[5, 7] = np.nan
    with pytest.raises(ValueError, match=r"no valid depth at pixel \(7, 5\)"):
        measure.distance_m(points, (7, 5), (0, 0))


def test_run_infer_files_dtypes_and_units(tmp_path: Path) -> None:
    h, w = 6, 8
    depth = np.linspace(0.3, 40.0, h * w, dtype=np.float32).reshape(h, w)
    depth[0, :5] = [np.nan, 0.0, -1.0, 70.0, 0.0004]  # no depth x3, beyond 65.535 m, rounds to 0 mm
    rgb = np.random.default_rng(2).integers(0, 256, (h, w, 3), dtype=np.uint8)
    meta = infer.run_infer(rgb, 10.0, "given", FakeModel(depth), tmp_path / "out", {"photo": "p.jpg"})
    out = tmp_path / "out"

    npy = np.load(out / "depth.npy")
    assert npy.dtype == np.float32
    np.testing.assert_array_equal(npy, depth)

    png = np.asarray(Image.open(out / "depth.png"))
    assert png.dtype == np.uint16 and png.shape == (h, w)
    valid = np.isfinite(depth) & (depth > 0)
    expected = np.rint(np.where(valid, depth.astype(np.float64), 0) * 1000)
    expected[expected > 65535] = 0
    np.testing.assert_array_equal(png, expected.astype(np.uint16))
    assert png[0, :5].tolist() == [0, 0, 0, 0, 0] and png[-1, -1] == 40000

    preview = np.asarray(Image.open(out / "preview.png"))
    assert preview.dtype == np.uint8 and preview.shape == (h, w, 3)
    assert not preview[0, :3].any() and preview[valid].any(axis=-1).all()  # invalid black, valid coloured

    points, colors = read_ply(out / "cloud.ply")
    k_px = (10.0, 10.0, 3.5, 2.5)
    expected_points = FakeModel(depth).infer(rgb, k_px)["points_m"]
    np.testing.assert_allclose(points, expected_points[valid], rtol=1e-6)
    np.testing.assert_array_equal(colors, rgb[valid])

    on_disk = json.loads((out / "meta.json").read_text())
    assert on_disk == json.loads(json.dumps(meta))
    assert (on_disk["width"], on_disk["height"], on_disk["f_px"], on_disk["focal_source"]) == (w, h, 10.0, "given")
    assert on_disk["k_px"] == list(k_px) and on_disk["photo"] == "p.jpg"
    assert on_disk["depth_m"]["min"] == pytest.approx(0.0004) and on_disk["depth_m"]["max"] == 70.0
    assert on_disk["depth_m"]["median"] == pytest.approx(float(np.median(depth[valid])))
    assert on_disk["depth_m"]["valid_fraction"] == pytest.approx((h * w - 3) / (h * w))
    assert on_disk["depth_png"]["clipped_pixels"] == 2 and on_disk["cloud_points"] == h * w - 3
    assert on_disk["elapsed_s"]["total"] >= on_disk["elapsed_s"]["infer"] >= 0


def test_a_model_returning_the_wrong_size_is_named() -> None:
    class Small(FakeModel):
        def infer(self, rgb: np.ndarray, k_px: tuple[float, float, float, float]) -> dict[str, np.ndarray]:
            return super().infer(rgb[::2, ::2], k_px)

    with pytest.raises(ValueError, match=r"Small.infer returned depth_m \(2, 2\) for a \(4, 4\) photo"):
        infer.predict(Small(1.0), np.zeros((4, 4, 3), np.uint8), (1.0, 1.0, 1.5, 1.5))


def test_cli_uses_exif_focal_and_the_image_centre(
    tmp_path: Path, fake_models: list[FakeModel], capsys: pytest.CaptureFixture[str]
) -> None:
    jpg = photo(tmp_path / "p.jpg", (600, 400), f35=30)
    assert infer.main([str(jpg), "--model", "fake://plane", "--out", str(tmp_path / "out")]) == 0
    f_px = 30 / 36 * 600
    assert fake_models[0].k_px == (f_px, f_px, 299.5, 199.5)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert (meta["focal_source"], meta["model"], meta["width"], meta["height"]) == (
        "exif_35mm",
        "fake://plane",
        600,
        400,
    )
    assert meta["f_px"] == pytest.approx(f_px)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "cloud.ply",
        "depth.npy",
        "depth.png",
        "meta.json",
        "preview.png",
    ]
    assert np.all(np.asarray(Image.open(tmp_path / "out" / "depth.png")) == 4000)
    assert "f 500.0 px (exif_35mm)" in capsys.readouterr().out


def test_cli_given_focal_beats_exif_and_no_focal_warns(tmp_path: Path, fake_models: list[FakeModel]) -> None:
    jpg = photo(tmp_path / "p.jpg", f35=30)
    infer.main([str(jpg), "--model", "fake://plane", "--out", str(tmp_path / "a"), "--f-px", "777"])
    assert json.loads((tmp_path / "a" / "meta.json").read_text())["focal_source"] == "given"
    plain = photo(tmp_path / "plain.jpg")
    with pytest.warns(UserWarning, match="no focal length"):
        infer.main([str(plain), "--model", "fake://plane", "--out", str(tmp_path / "b")])
    assert json.loads((tmp_path / "b" / "meta.json").read_text())["focal_source"] == "default_fov"


def test_measure_cli_prints_metres(
    tmp_path: Path, fake_models: list[FakeModel], capsys: pytest.CaptureFixture[str]
) -> None:
    jpg = photo(tmp_path / "p.jpg", (600, 400))
    argv = [str(jpg), "--model", "fake://plane", "--from", "100,200", "--to", "350,200", "--f-px", "500"]
    assert measure.main(argv) == 0
    assert capsys.readouterr().out.startswith("2.000 m")
    with pytest.raises(SystemExit):
        measure.main([str(jpg), "--model", "fake://plane", "--from", "100", "--to", "1,2"])
    assert "expected X,Y as two integers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        measure.main([str(jpg), "--model", "fake://plane", "--from", "700,0", "--to", "1,2", "--f-px", "500"])
    assert "pixel (700, 0) is outside the 600x400 image" in capsys.readouterr().err


def _tiny_net(cstm: str) -> tuple[torch.nn.Module, list[tuple[int, ...]], list[torch.Tensor]]:
    """metric3d_tiny with random weights (and a non-constant head), recording the encoder's input shapes and the
    log-depth its last conv produces, before the crop."""
    torch.manual_seed(0)
    net = build_model(get_model_config("metric3d_tiny", cstm=cstm))
    torch.nn.init.normal_(net.head[-1].weight, std=0.1)  # zero at initialisation: the output would be flat
    shapes: list[tuple[int, ...]] = []
    logs: list[torch.Tensor] = []
    net.encoder.register_forward_pre_hook(lambda _m, args: shapes.append(tuple(args[0].shape)))
    net.head[-1].register_forward_hook(lambda _m, _args, out: logs.append(out.detach().clone()))
    return net, shapes, logs


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cstm", ["label", "none"])
def test_native_scale_pads_to_the_stride_and_crops_back_exactly(cstm: str) -> None:
    net, shapes, logs = _tiny_net(cstm)
    h, w, f_px = 100, 130, 250.0
    rgb = np.random.default_rng(3).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = net.infer(rgb, (f_px, f_px, 64.5, 49.5), scale="native")
    assert shapes == [(1, 3, 128, 160)]  # 100 x 130 padded to the stride of 32, never resized
    expected_net = torch.exp(logs[0][0, 0, :h, :w].clamp(-5.0, 7.0)).numpy()
    np.testing.assert_array_equal(out["depth_net"], expected_net)
    # Label mode: canonical metres / (F_CANONICAL_PX / f) = / 4; none: the network's metres as they are.
    np.testing.assert_array_equal(out["depth_m"], expected_net / np.float32(4.0 if cstm == "label" else 1.0))
    assert out["depth_m"].shape == (h, w)


@pytest.mark.timeout(60)
def test_fit_scale_shrinks_into_infer_hw_and_image_mode_ignores_the_scale() -> None:
    net, shapes, _ = _tiny_net("none")
    rgb = np.zeros((256, 352, 3), np.uint8)
    k_px = (250.0, 250.0, 175.5, 127.5)
    net.infer(rgb, k_px)  # fit, the default: 256 x 352 into 128 x 160 is a 0.4545 shrink -> 116 x 160
    net.infer(rgb, k_px, scale="native")
    assert shapes == [(1, 3, 128, 160), (1, 3, 256, 352)]
    image, image_shapes, _ = _tiny_net("image")
    small, k_small = rgb[:64, :96], (2000.0, 2000.0, 47.5, 31.5)
    a, b = image.infer(small, k_small, scale="fit"), image.infer(small, k_small, scale="native")
    np.testing.assert_array_equal(a["depth_m"], b["depth_m"])
    assert image_shapes == [(1, 3, 32, 64)] * 2  # the canonical resize, 1000 / 2000 -> 32 x 48, padded to 32 x 64
    with pytest.raises(ValueError, match="unknown infer scale 'half'; valid: fit, native"):
        net.infer(rgb, k_px, scale="half")
