"""The consolidation branch leaves the shipped network's lesion and lung channels untouched.

Needs the ``train`` extra (torch): run with the train venv (CI has no torch and skips it).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from inference.training.class_head import fit_head  # noqa: E402
from inference.training.crossval import without  # noqa: E402
from inference.training.data import load_medseg  # noqa: E402
from inference.training.nets import export_onnx  # noqa: E402

pytestmark = pytest.mark.unit


def _logits(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"SLICES": x})[0]


def test_only_the_third_channel_is_new(repo_root: Path, shared_data: Path, tmp_path: Path) -> None:
    shipped = repo_root / "inference/model_repository/lesion_unet_onnx/1/model.onnx"
    medseg = load_medseg(shared_data / "ct-lesions")
    model = fit_head(shipped, without(medseg, np.arange(40)), seed=1, steps=3)
    assert all(not p.requires_grad for p in model.base.parameters())
    with warnings.catch_warnings():  # the exporter's own tracer warnings
        warnings.simplefilter("ignore")
        export_onnx(model, tmp_path / "head.onnx", 256)

    x = medseg.images[:4, None].astype(np.float32)
    before, after = _logits(shipped, x), _logits(tmp_path / "head.onnx", x)
    assert before.shape[1] == 2 and after.shape[1] == 3
    np.testing.assert_allclose(after[:, :2], before, atol=1e-4)
    assert np.abs(after[:, 2]).max() > 0  # the branch answers
