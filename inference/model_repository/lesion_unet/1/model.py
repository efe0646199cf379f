"""Triton Python-backend study model: HU volume + spacing -> lesion masks and biomarkers.

Also the code of ``lesion_unet_large`` (its ``1/model.py`` is a link to this file): the models
differ only by the network file their config names.

The computation is :func:`inference.segmentation.segment_volume`, the function the ``--local``
path of ``ctriage quantify --model lesion_unet`` runs, with the same network in the same
process: onnxruntime on ``lesion_unet_onnx``'s weights (``NETWORK_ONNX`` in config.pbtxt),
threads set by the config's ``STUDY_THREADS`` (slabs and network batches at once) and ``ORT_*``
parameters. No BLS round trip per slice batch: each
cost a request, a copy of the slices into shared memory and back and a wait in the slice
model's queue (about two thirds of a study's time on 2 cores, ``docs/imaging-performance.md``).
A volume that cannot be quantified gets an INVALID_ARG error response (HTTP 400).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from inference.biomarkers import Biomarkers
from inference.exceptions import InvalidVolume
from inference.regional import RegionalBiomarkers
from inference.segmentation import OnnxSegmenter, segment_volume


def _parameter(config: dict, key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value", default)
    return str(value)


class TritonPythonModel:
    """One volume per request; one onnxruntime session per instance."""

    def initialize(self, args: dict[str, str]) -> None:
        """Open the network with the configured threads; names of the scalar outputs."""
        config = json.loads(args["model_config"])
        repository = Path(args["model_repository"]).parent
        network = repository / _parameter(config, "NETWORK_ONNX", "lesion_unet_onnx/1/model.onnx")
        threads = int(_parameter(config, "ORT_INTRA_OP_THREADS", "1"))
        spinning = _parameter(config, "ORT_ALLOW_SPINNING", "0") == "1"
        self.study_threads = int(_parameter(config, "STUDY_THREADS", "2"))
        self.segmenter = OnnxSegmenter(network, threads=threads, allow_spinning=spinning)
        self.model_name = str(config.get("name", "lesion_unet"))
        self.names = Biomarkers.names() + RegionalBiomarkers.names()
        pb_utils.Logger.log_info(
            f"{self.model_name} ready: {network}, {self.study_threads} study threads, {threads}"
            f" onnxruntime threads per batch, spinning {spinning}"
        )

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
            seg = segment_volume(
                hu.as_numpy(),
                spacing,  # type: ignore[arg-type]
                self.segmenter,
                self.study_threads,
            )
        except InvalidVolume as e:
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"invalid volume: {e}", pb_utils.TritonError.INVALID_ARG)
            )
        except Exception as e:  # noqa: BLE001 - one failing request must not fail the others
            pb_utils.Logger.log_error(f"{self.model_name} failed: {type(e).__name__}: {e}")
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"internal error: {type(e).__name__}: {e}")
            )
        values = seg.biomarkers.as_dict() | seg.regional.as_dict()
        tensors = [
            pb_utils.Tensor(name.upper(), np.array([values[name]], dtype=np.float32))
            for name in self.names
        ]
        # the masks are 2 x 78 MB for a 512 x 512 x 300 study: sent only when asked for (a
        # request that names no output gets them all, as Triton's own default)
        requested = set(request.requested_output_names()) or {"CLASSES", "LUNG"}  # type: ignore[attr-defined]
        if "CLASSES" in requested:
            tensors.append(pb_utils.Tensor("CLASSES", seg.classes))
        if "LUNG" in requested:
            tensors.append(pb_utils.Tensor("LUNG", seg.lung.astype(np.uint8)))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self) -> None:
        """The onnxruntime session is released with the instance."""
