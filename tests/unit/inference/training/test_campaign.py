"""The CPU training campaign stops and resumes bit for bit (needs the ``train`` extra: torch).

CI does not install torch (it never trains), so this runs where training runs:
``.venv-train/bin/python -m pytest tests/unit/inference/training``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from inference.training.campaign import train_steps  # noqa: E402
from inference.training.data import SliceSet  # noqa: E402

pytestmark = pytest.mark.unit

CONFIG = {"steps": 6, "batch": 2, "widths": [4, 8], "lr": 3e-3}


def _slices(n: int, with_lung: bool, seed: int) -> SliceSet:
    rng = np.random.default_rng(seed)
    images = rng.random((n, 32, 32), dtype=np.float32)
    classes = (rng.random((n, 32, 32)) < 0.2).astype(np.uint8) * rng.integers(1, 3, (n, 32, 32))
    lung = (
        (rng.random((n, 32, 32)) < 0.6).astype(np.uint8)
        if with_lung
        else np.full_like(classes, 255)
    )
    return SliceSet(images, classes.astype(np.uint8), lung, with_lung, tuple(map(str, range(n))))


@pytest.mark.parametrize("channels_last", [False, True])
def test_a_stopped_model_resumes_to_the_same_weights(tmp_path: Path, channels_last: bool) -> None:
    config = {**CONFIG, "channels_last": channels_last}
    medseg, covid = _slices(4, False, 1), _slices(4, True, 2)
    straight = train_steps(config, medseg, covid, 7, tmp_path / "a.pt", lambda: False)
    asked = iter([False, False, False, True])  # three steps, then stop
    assert train_steps(config, medseg, covid, 7, tmp_path / "b.pt", lambda: next(asked)) is None
    assert torch.load(tmp_path / "b.pt", weights_only=True)["step"] == 3
    resumed = train_steps(config, medseg, covid, 7, tmp_path / "b.pt", lambda: False)
    assert straight is not None and resumed is not None
    for (name, a), (_, b) in zip(
        straight.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert straight.head.weight.is_contiguous()  # exported as ONNX in the default layout
    other = train_steps(config, medseg, covid, 8, tmp_path / "c.pt", lambda: False)
    assert other is not None
    assert not torch.equal(other.head.weight, straight.head.weight)  # the seed matters
