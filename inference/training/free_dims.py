"""Free the spatial dimensions of an exported lesion network, so it runs on lung crops.

The network is fully convolutional (Conv, ReLU, MaxPool, ConvTranspose, Concat) but the
original export declared its input and output as ``(n, 1, 256, 256)``, and onnxruntime refuses
any other size. This rewrites the declared height and width as named dimensions ``h`` and ``w``
and drops the stored intermediate shapes; the weights and operators are untouched. The result
is checked against the original on a 256 x 256 batch (same logits to 1e-5) and on a crop whose
size is a multiple of the network's total down-sampling.

Run (needs the ``train`` extra for ``onnx``)::

    .venv-train/bin/python -m inference.training.free_dims \
        inference/model_repository/lesion_unet_onnx/1/model.onnx

New exports (:func:`inference.training.train_lesion.export_onnx`) declare the dimensions free
already.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

SPATIAL = {2: "h", 3: "w"}


def free_spatial_dims(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its inputs' and outputs' axes 2 and 3 named, intermediate shapes dropped."""
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        for axis, name in SPATIAL.items():
            dims[axis].Clear()
            dims[axis].dim_param = name
    del model.graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def _logits(path: Path, slices: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["LOGITS"], {"SLICES": slices})[0])


def main() -> None:
    """Rewrite the model file in place (or to ``--out``) after checking it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or args.model
    freed = free_spatial_dims(onnx.load(str(args.model)))
    rng = np.random.default_rng(0)
    whole = rng.random((2, 1, 256, 256), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / "model.onnx"
        onnx.save(freed, str(candidate))
        before, after = _logits(args.model, whole), _logits(candidate, whole)
        np.testing.assert_allclose(after, before, atol=1e-5)
        crop = _logits(candidate, whole[:, :, 40:200, 24:232])
        assert crop.shape[2:] == (160, 208), crop.shape
        onnx.save(freed, str(out))
    print(f"{out}: spatial dimensions free, logits on 256 x 256 unchanged")


if __name__ == "__main__":
    main()
