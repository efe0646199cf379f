"""Triton Python-backend model: HU volume + spacing -> lung and lesion biomarkers.

The computation is :func:`inference.biomarkers.quantify_threshold`, the same function the
``--local`` path of ``ctriage quantify`` runs, so the two agree exactly (up to FP32 outputs).
A request that cannot be quantified (empty volume, bad spacing) gets an error response with
code INVALID_ARG, which the HTTP endpoint answers with status 400; other requests in the same
``execute`` call are unaffected.
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from inference.biomarkers import Biomarkers, quantify_threshold
from inference.exceptions import InvalidVolume

HU_INPUT = "HU"
SPACING_INPUT = "SPACING_MM"


class TritonPythonModel:
    """One instance quantifies one volume per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Check that the configured outputs are exactly the biomarkers, by name."""
        self.logger = pb_utils.Logger
        config = json.loads(args["model_config"])
        configured = {output["name"] for output in config["output"]}
        self.outputs = {name: name.upper() for name in Biomarkers.names()}
        expected = set(self.outputs.values())
        if configured != expected:
            raise pb_utils.TritonModelException(
                f"config.pbtxt outputs {sorted(configured)} != biomarkers {sorted(expected)}"
            )
        self.logger.log_info(f"lesion_threshold ready, outputs {sorted(expected)}")

    def execute(self, requests: list) -> list:
        """Answer each request with its biomarkers, or with an error response of its own."""
        return [self._answer(request) for request in requests]

    def _answer(self, request: object) -> object:
        try:
            hu_tensor = pb_utils.get_input_tensor_by_name(request, HU_INPUT)
            spacing_tensor = pb_utils.get_input_tensor_by_name(request, SPACING_INPUT)
            if hu_tensor is None or spacing_tensor is None:
                raise InvalidVolume(f"inputs {HU_INPUT} and {SPACING_INPUT} are both required")
            spacing = tuple(float(v) for v in spacing_tensor.as_numpy().ravel())
            biomarkers = quantify_threshold(hu_tensor.as_numpy(), spacing)  # type: ignore[arg-type]
        except InvalidVolume as e:
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"invalid volume: {e}", pb_utils.TritonError.INVALID_ARG)
            )
        except Exception as e:  # noqa: BLE001 - one failing request must not fail its batch
            self.logger.log_error(f"lesion_threshold failed: {type(e).__name__}: {e}")
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"internal error: {type(e).__name__}: {e}")
            )
        values = biomarkers.as_dict()
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor(output, np.array([values[name]], dtype=np.float32))
                for name, output in self.outputs.items()
            ]
        )

    def finalize(self) -> None:
        """Nothing to release: the model holds no resources."""
