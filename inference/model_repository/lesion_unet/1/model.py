"""Triton Python-backend study model: HU volume + spacing -> lesion masks and biomarkers.

The computation is :func:`inference.segmentation.segment_volume`, the function the ``--local``
path of ``ctriage quantify --model lesion_unet`` runs; only the network call differs: here it
is a BLS request to ``lesion_unet_onnx`` (dynamic batching there), locally onnxruntime in
process. A volume that cannot be quantified gets an INVALID_ARG error response (HTTP 400).
"""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils

from inference.biomarkers import Biomarkers
from inference.exceptions import InvalidVolume
from inference.regional import RegionalBiomarkers
from inference.segmentation import segment_volume

NETWORK = "lesion_unet_onnx"


class NetworkError(RuntimeError):
    """The BLS call to the slice network failed."""


def _network(slices: np.ndarray) -> np.ndarray:
    request = pb_utils.InferenceRequest(
        model_name=NETWORK,
        requested_output_names=["LOGITS"],
        inputs=[pb_utils.Tensor("SLICES", np.ascontiguousarray(slices, dtype=np.float32))],
    )
    response = request.exec()
    if response.has_error():
        raise NetworkError(f"{NETWORK}: {response.error().message()}")
    return pb_utils.get_output_tensor_by_name(response, "LOGITS").as_numpy()


class TritonPythonModel:
    """One volume per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Names of the scalar outputs."""
        self.names = Biomarkers.names() + RegionalBiomarkers.names()
        pb_utils.Logger.log_info(f"lesion_unet ready, {len(self.names)} biomarkers + masks")

    def execute(self, requests: list) -> list:
        """Answer each request with its biomarkers and masks, or an error of its own."""
        return [self._answer(request) for request in requests]

    def _answer(self, request: object) -> object:
        try:
            hu = pb_utils.get_input_tensor_by_name(request, "HU")
            spacing_tensor = pb_utils.get_input_tensor_by_name(request, "SPACING_MM")
            if hu is None or spacing_tensor is None:
                raise InvalidVolume("inputs HU and SPACING_MM are both required")
            spacing = tuple(float(v) for v in spacing_tensor.as_numpy().ravel())
            seg = segment_volume(hu.as_numpy(), spacing, _network)  # type: ignore[arg-type]
        except InvalidVolume as e:
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"invalid volume: {e}", pb_utils.TritonError.INVALID_ARG)
            )
        except Exception as e:  # noqa: BLE001 - one failing request must not fail the others
            pb_utils.Logger.log_error(f"lesion_unet failed: {type(e).__name__}: {e}")
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"internal error: {type(e).__name__}: {e}")
            )
        values = seg.biomarkers.as_dict() | seg.regional.as_dict()
        tensors = [
            pb_utils.Tensor(name.upper(), np.array([values[name]], dtype=np.float32))
            for name in self.names
        ]
        tensors.append(pb_utils.Tensor("CLASSES", seg.classes))
        tensors.append(pb_utils.Tensor("LUNG", seg.lung.astype(np.uint8)))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self) -> None:
        """Nothing to release."""
