"""WiSE-FT interpolation: alpha 0 is the start, 1 the fine-tuned model, between is the line.

Needs the ``train`` extra (torch): run with the train venv
(CI has no torch and skips it).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from inference.training.crossval import load_onnx_init  # noqa: E402
from inference.training.nets import CHANNELS, UNet, export_onnx  # noqa: E402
from inference.training.wise import interpolate  # noqa: E402

pytestmark = pytest.mark.unit

WIDTHS = (4, 8, 16, 32)


@pytest.fixture
def start_and_tuned(tmp_path: Path) -> tuple[Path, Path, dict]:
    torch.manual_seed(3)
    start = UNet(WIDTHS, channels=2)
    with torch.no_grad():  # trained-looking batch norms: no two folded tensors alike
        for module in start.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.normal_()
                module.running_mean.normal_()
    with warnings.catch_warnings():  # the exporter's own tracer warnings
        warnings.simplefilter("ignore")
        export_onnx(start, tmp_path / "start.onnx", 32)
    tuned = UNet(WIDTHS, channels=CHANNELS)
    load_onnx_init(tuned, tmp_path / "start.onnx")
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(torch.randn_like(p))
    torch.save({"model": tuned.state_dict()}, tmp_path / "tuned.pt")
    return tmp_path / "start.onnx", tmp_path / "tuned.pt", tuned.state_dict()


def test_the_ends_are_the_two_models_and_the_middle_is_their_mean(start_and_tuned) -> None:
    start_path, tuned_path, tuned = start_and_tuned
    start = UNet(WIDTHS, channels=CHANNELS)
    load_onnx_init(start, start_path)
    ends = {a: interpolate(start_path, tuned_path, a, WIDTHS).state_dict() for a in (0, 0.5, 1)}
    for name, value in start.state_dict().items():
        torch.testing.assert_close(ends[0][name], value)
        torch.testing.assert_close(ends[1][name], tuned[name])
        if value.is_floating_point():
            torch.testing.assert_close(ends[0.5][name], (value + tuned[name]) / 2)
