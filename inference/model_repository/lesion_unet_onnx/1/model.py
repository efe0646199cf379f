"""Triton Python-backend model: batches of slices -> lesion and lung logits with onnxruntime.

Dynamic batching hands ``execute`` several requests; their slices are concatenated, run in one
onnxruntime call and split back per request.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from inference.segmentation import INPUT_SIZE, OnnxSegmenter


class TritonPythonModel:
    """One onnxruntime session per model instance."""

    def initialize(self, args: dict[str, str]) -> None:
        """Open model.onnx next to this file."""
        config = json.loads(args["model_config"])
        threads = int(config.get("parameters", {}).get("ORT_THREADS", {}).get("string_value", 0))
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.segmenter = OnnxSegmenter(path, threads=threads)
        pb_utils.Logger.log_info(f"lesion_unet_onnx ready: {path}, {threads} threads")

    def execute(self, requests: list) -> list:
        """Run all requests' slices as one batch."""
        chunks, bad = [], {}
        for i, request in enumerate(requests):
            slices = pb_utils.get_input_tensor_by_name(request, "SLICES").as_numpy()
            if slices.ndim != 4 or slices.shape[1:] != (1, INPUT_SIZE, INPUT_SIZE):
                bad[i] = f"SLICES must be (n, 1, {INPUT_SIZE}, {INPUT_SIZE}), got {slices.shape}"
                slices = slices[:0].reshape(0, 1, INPUT_SIZE, INPUT_SIZE)
            chunks.append(np.ascontiguousarray(slices, dtype=np.float32))
        logits = self.segmenter(np.concatenate(chunks)) if sum(map(len, chunks)) else None
        responses, start = [], 0
        for i, chunk in enumerate(chunks):
            if i in bad:
                error = pb_utils.TritonError(bad[i], pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            # every request empty: no batch ran, answer each with its (empty) slices
            part = chunk if logits is None else logits[start : start + len(chunk)]
            start += len(chunk)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("LOGITS", part)]))
        return responses

    def finalize(self) -> None:
        """The session is released with the instance."""
