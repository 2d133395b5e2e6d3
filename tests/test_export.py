"""model.export: the ONNX graph (CSTM, resize and network inside) gives infer()'s metres under onnxruntime."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from model import build_model, get_model_config, save_checkpoint
from model.export import MAX_RELATIVE_DIFF, main, sample_photo
from model.metric3d_v1 import Metric3DV1, get_variant
from model.onnx_graph import Uint8LinearResize, photo_to_depth

HW = (96, 136)  # fitted into metric3d_tiny's 128 x 160: upscaled by 160/136, rounded to 113 x 160


def _tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model(get_model_config("metric3d_tiny")).eval()
    # A fresh head predicts one constant depth (zero weights); random weights make depth vary with the photo
    # (here by ~6 % across it), so a wrong resize, crop or focal shows.
    torch.nn.init.normal_(net.head[-1].weight, std=0.5)
    return net


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("in_hw", "out_hw"),
    [
        ((96, 136), (113, 160)),
        ((480, 640), (256, 341)),
        ((37, 53), (121, 173)),
        ((100, 100), (50, 50)),
        ((7, 9), (5, 13)),
    ],
)
def test_uint8_resize_is_opencvs_bit_for_bit(in_hw, out_hw):
    rgb, _ = sample_photo(in_hw, seed=3)
    want = cv2.resize(rgb, None, fx=out_hw[1] / in_hw[1], fy=out_hw[0] / in_hw[0], interpolation=cv2.INTER_LINEAR)
    got = Uint8LinearResize(in_hw, out_hw)(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0].permute(1, 2, 0)
    assert np.array_equal(got.numpy(), want)


@pytest.mark.timeout(120)
def test_metric3d_v1_graph_is_its_infer():
    """The centred canvas of the official padding colour, the crop back and the [0, 300] m clamp, in PyTorch."""
    torch.manual_seed(0)
    tiny = {"encoder": "test_convnext", "decoder_widths": (16, 16, 32, 64), "input_hw": (64, 96)}
    net = Metric3DV1(get_variant("metric3d_v1_convtiny", **tiny)).eval()
    for hw in [(60, 100), (64, 96), (120, 150)]:
        rgb, k_px = sample_photo(hw)
        with torch.no_grad():
            got = photo_to_depth(net, hw)(torch.from_numpy(rgb)[None], torch.tensor([k_px]))[0].numpy()
        want = net.infer(rgb, k_px)["depth_m"]
        assert np.abs(got - want).max() <= 1e-5 * want.max(), hw


def test_image_mode_is_refused():
    net = build_model(get_model_config("metric3d_tiny", cstm="image"))
    with pytest.raises(ValueError, match="image mode"):
        photo_to_depth(net, HW)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_export_runs_in_onnxruntime_as_infer(tmp_path: Path, capsys):
    import onnxruntime as ort

    net = _tiny_net()
    save_checkpoint(str(tmp_path / "tiny.pt"), net)
    out = tmp_path / "tiny.onnx"
    args = ["--model", str(tmp_path / "tiny.pt"), "--out", str(out), "--height", str(HW[0]), "--width", str(HW[1])]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "image uint8 Bx96x136x3 + intrinsics float32 Bx4 -> depth_m float32 Bx96x136" in printed
    assert f"within the {MAX_RELATIVE_DIFF:.0e} bound" in printed, printed

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type, i.shape) for i in session.get_inputs()] == [
        ("image", "tensor(uint8)", ["batch", 96, 136, 3]),
        ("intrinsics", "tensor(float)", ["batch", 4]),
    ]
    assert [(o.name, o.type, o.shape) for o in session.get_outputs()] == [
        ("depth_m", "tensor(float)", ["batch", 96, 136])
    ]
    # A batch of two photos with different cameras: each item gets its own focal.
    photos = [sample_photo(HW, seed) for seed in (1, 2)]
    photos[1] = (photos[1][0], tuple(v * s for v, s in zip(photos[1][1], (1.7, 1.6, 1.0, 1.0))))
    images = np.stack([rgb for rgb, _ in photos])
    intrinsics = np.asarray([k for _, k in photos], np.float32)
    (depth_m,) = session.run(None, {"image": images, "intrinsics": intrinsics})
    assert depth_m.shape == (2, *HW) and depth_m.dtype == np.float32
    for got, (rgb, k_px) in zip(depth_m, photos):
        want = net.infer(rgb, k_px)["depth_m"]
        assert want.std() / want.mean() > 0.03  # the test photo really moves the depth
        # The bound is MAX_RELATIVE_DIFF (1e-3); the graph reproduces infer()'s resize exactly, so only float
        # rounding is left (1.2e-6 measured): 1e-4 catches a graph that drifts from infer().
        assert (np.abs(got - want) / want).max() <= 1e-4
