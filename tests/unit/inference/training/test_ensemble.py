"""The output ensemble builder: one ONNX file that is its members' mean, checked before written.

Needs the ``train`` extra (torch); CI checks the committed ensemble file itself with
onnxruntime alone (tests/unit/inference/test_large_variant.py). Run with
``.venv-train/bin/python -m pytest tests/unit/inference/training``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from inference.training.ensemble import build, mean_of_members, network_of  # noqa: E402
from inference.training.nets import UNet, export_onnx  # noqa: E402

pytestmark = pytest.mark.unit


def _member(tmp_path: Path, name: str, widths: tuple[int, ...], channels: int, seed: int) -> Path:
    torch.manual_seed(seed)
    model = UNet(widths, channels=channels)
    with torch.no_grad():  # batch norm statistics that are not the identity, to be folded
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / f"{name}.onnx"
    export_onnx(model, path, 64)
    return path


def test_a_member_is_read_back_with_its_widths_and_channels(tmp_path: Path) -> None:
    path = _member(tmp_path, "a", (4, 8, 16, 32), 3, 1)
    model = network_of(path)
    assert model.head.out_channels == 3 and model.down[0][0].out_channels == 4
    slices = np.random.default_rng(0).random((2, 1, 64, 64), dtype=np.float32)
    with torch.no_grad():
        again = model(torch.from_numpy(slices)).numpy()
    np.testing.assert_allclose(again, mean_of_members([path], slices), atol=1e-4)


def test_the_ensemble_is_the_mean_of_two_and_three_channel_members(tmp_path: Path) -> None:
    two = _member(tmp_path, "two", (4, 8, 16, 32), 2, 2)
    three = _member(tmp_path, "three", (8, 16, 32, 64), 3, 3)
    out = tmp_path / "ensemble" / "network.onnx"
    assert build([two, three], out) <= 1e-4
    slices = np.random.default_rng(1).random((2, 1, 96, 64), dtype=np.float32)  # a crop size
    got = mean_of_members([out], slices)
    a, b = mean_of_members([two], slices), mean_of_members([three], slices)
    assert got.shape == (2, 3, 96, 64)
    np.testing.assert_allclose(got[:, :2], (a + b[:, :2]) / 2, atol=1e-4)
    np.testing.assert_allclose(got[:, 2], b[:, 2], atol=1e-4)


def test_a_file_that_is_not_a_lesion_network_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "conv.onnx"
    torch.onnx.export(torch.nn.Conv2d(1, 2, 3), (torch.zeros(1, 1, 8, 8),), str(path))
    with pytest.raises(ValueError, match="not an exported lesion U-Net"):
        network_of(path)
