"""Quantify a CT volume on a Triton server over HTTP (binary tensors).

``TritonQuantifier`` sends the int16 HU volume and its spacing to a study model (by name:
``lesion_unet``, the learned segmentation and the default, or ``lesion_threshold``, the
transparent baseline) and returns :class:`~inference.biomarkers.Biomarkers`; ``quantify_study``
also returns the regional biomarkers and masks of ``lesion_unet``, and ``quantify_volume``
returns whatever the served model has (regional biomarkers and masks when it declares them).
Every failure becomes one of the typed errors of :mod:`inference.exceptions` (raised ``from``
the original) with the model name, url and timeout in its message. It never waits forever:
connecting and each network read are bounded.

The HTTP client of ``tritonclient`` runs on gevent, whose objects belong to the thread that
made them; one client per thread is kept, so a quantifier can be shared with a thread pool.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import gevent
import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from inference.biomarkers import Biomarkers
from inference.exceptions import (
    InferenceRejected,
    InvalidVolume,
    TritonError,
    TritonServerError,
    TritonTimeout,
    TritonUnavailable,
)
from inference.regional import RegionalBiomarkers
from inference.volume import CtVolume

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: The transparent baseline: HU ranges and connected components, no training.
THRESHOLD_MODEL = "lesion_threshold"
HU_INPUT = "HU"
SPACING_INPUT = "SPACING_MM"
MAX_CONNECTION_TIMEOUT_S = 10.0
#: The learned study model (masks + regional biomarkers), the one the worker uses by default.
UNET_MODEL = "lesion_unet"
#: The learned study model for GPU servers: the same code on an ensemble of two networks.
LARGE_MODEL = "lesion_unet_large"
DEFAULT_MODEL = UNET_MODEL
SLICE_MODEL = "lesion_unet_onnx"
MASK_OUTPUTS = ("CLASSES", "LUNG")


@dataclass(frozen=True)
class StudyResult:
    """What a study model returns: biomarkers and, when asked for, the (z, y, x) masks."""

    biomarkers: Biomarkers
    regional: RegionalBiomarkers | None  # None: the model has no regional outputs (threshold)
    classes: np.ndarray | None = None  # uint8: 0 background, 1 ground glass, 2 consolidation
    lung: np.ndarray | None = None  # bool


def output_name(biomarker: str) -> str:
    """Triton output tensor name of a biomarker field (``lesion_percent`` -> ``LESION_PERCENT``)."""
    return biomarker.upper()


class TritonQuantifier:
    """Client of the lesion quantification model on a Triton server (HTTP, binary data)."""

    def __init__(
        self,
        url: str,
        model_name: str = DEFAULT_MODEL,
        timeout_s: float = 60.0,
        connection_timeout_s: float | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.url = url.removeprefix("http://")
        self.model_name = model_name
        self.timeout_s = float(timeout_s)
        self.connection_timeout_s = float(
            connection_timeout_s or min(self.timeout_s, MAX_CONNECTION_TIMEOUT_S)
        )
        self._local = threading.local()
        self._served_version: str | None = None
        self._outputs: frozenset[str] | None = None

    def __repr__(self) -> str:
        return f"TritonQuantifier({self.url!r}, {self.model_name!r}, timeout_s={self.timeout_s:g})"

    def _client(self) -> httpclient.InferenceServerClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = httpclient.InferenceServerClient(
                self.url,
                connection_timeout=self.connection_timeout_s,
                network_timeout=self.timeout_s,
            )
            self._local.client = client
        return client

    def _fail(self, cls: type[TritonError], message: str) -> TritonError:
        return cls(message, model_name=self.model_name, url=self.url, timeout_s=self.timeout_s)

    def _call(self, what: str, fn: Callable[[httpclient.InferenceServerClient], T]) -> T:
        """Run ``fn(client)``, mapping every transport and server error to a typed one."""
        try:
            return fn(self._client())
        except InferenceServerException as e:
            status = str(e.status() or "")
            if status == "400" and self._model_ready_or_unknown():
                raise self._fail(InferenceRejected, f"{what} rejected: {e.message()}") from e
            raise self._fail(
                TritonServerError, f"{what} failed (HTTP {status or '?'}): {e.message()}"
            ) from e
        except (TimeoutError, gevent.Timeout) as e:
            self._reset()
            raise self._fail(TritonTimeout, f"{what} timed out") from e
        except OSError as e:  # refused, unreachable, DNS, reset
            self._reset()
            raise self._fail(TritonUnavailable, f"{what}: {type(e).__name__}: {e}") from e

    def _model_ready_or_unknown(self) -> bool:
        """After a 400: False only when the model is known to be absent or not ready."""
        try:
            return bool(self._client().is_model_ready(self.model_name))
        except (InferenceServerException, OSError, gevent.Timeout):
            return True

    def _reset(self) -> None:
        """Drop this thread's client after a transport error: its connection may be broken."""
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            try:
                client.close()
            except (OSError, InferenceServerException) as e:
                logger.debug("closing a broken Triton client: %s", e)

    def quantify(self, volume: CtVolume) -> Biomarkers:
        """Quantify ``volume`` on the server."""
        return self.quantify_array(volume.hu, volume.spacing_mm)

    def quantify_array(self, hu: np.ndarray, spacing_mm: tuple[float, float, float]) -> Biomarkers:
        """Quantify an int16 (z, y, x) HU array with (z, y, x) spacing in mm on the server.

        The array is not validated beyond its type: the model decides what it accepts, so a
        bad volume comes back as ``InferenceRejected``.
        """
        values, _ = self._infer(hu, spacing_mm, Biomarkers.names(), ())
        return Biomarkers(**values)

    def quantify_study(
        self, hu: np.ndarray, spacing_mm: tuple[float, float, float], masks: bool = False
    ) -> StudyResult:
        """Biomarkers, regional biomarkers and (``masks=True``) the masks from a study model.

        Needs a model with the regional outputs (``lesion_unet``); the threshold model has only
        the core biomarkers, and asking it for more is answered ``TritonServerError``.
        """
        arrays = MASK_OUTPUTS if masks else ()
        names = Biomarkers.names() + RegionalBiomarkers.names()
        values, tensors = self._infer(hu, spacing_mm, names, arrays)
        core = {n: values[n] for n in Biomarkers.names()}
        regional = {n: values[n] for n in RegionalBiomarkers.names()}
        return StudyResult(
            Biomarkers(**core),
            RegionalBiomarkers(**regional),
            tensors.get("CLASSES"),
            tensors["LUNG"].astype(bool) if "LUNG" in tensors else None,
        )

    def quantify_volume(self, volume: CtVolume, masks: bool = False) -> StudyResult:
        """Core biomarkers, plus regional ones and masks when the served model declares them.

        Masks only with ``masks=True``. The worker calls this, so switching ``model_name``
        between ``lesion_unet`` and ``lesion_threshold`` needs no other change; a model without
        mask outputs returns ``classes``/``lung`` of ``None`` and the caller decides.
        """
        outputs = self.model_outputs()
        regional_names = RegionalBiomarkers.names()
        has_regional = all(output_name(n) in outputs for n in regional_names)
        arrays = tuple(n for n in MASK_OUTPUTS if masks and n in outputs)
        names = Biomarkers.names() + (regional_names if has_regional else ())
        values, tensors = self._infer(volume.hu, volume.spacing_mm, names, arrays)
        return StudyResult(
            Biomarkers(**{n: values[n] for n in Biomarkers.names()}),
            RegionalBiomarkers(**{n: values[n] for n in regional_names}) if has_regional else None,
            tensors.get("CLASSES"),
            tensors["LUNG"].astype(bool) if "LUNG" in tensors else None,
        )

    def model_outputs(self) -> frozenset[str]:
        """Output tensor names of the model, from its metadata (asked once, then kept)."""
        if self._outputs is None:
            metadata = self._call("model metadata", lambda c: c.get_model_metadata(self.model_name))
            self._outputs = frozenset(str(o["name"]) for o in metadata.get("outputs", []))
        return self._outputs

    def _infer(
        self,
        hu: np.ndarray,
        spacing_mm: tuple[float, float, float],
        scalars: tuple[str, ...],
        arrays: tuple[str, ...],
    ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        if not isinstance(hu, np.ndarray) or hu.dtype != np.int16:
            raise InvalidVolume(f"HU must be an int16 numpy array, got {getattr(hu, 'dtype', hu)}")
        spacing = np.asarray(spacing_mm, dtype=np.float32).reshape(-1)
        hu_input = httpclient.InferInput(HU_INPUT, list(hu.shape), "INT16")
        hu_input.set_data_from_numpy(np.ascontiguousarray(hu), binary_data=True)
        spacing_input = httpclient.InferInput(SPACING_INPUT, list(spacing.shape), "FP32")
        spacing_input.set_data_from_numpy(spacing, binary_data=True)
        requested = [output_name(n) for n in scalars] + list(arrays)
        outputs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in requested]
        result = self._call(
            f"inference on a {hu.shape} volume",
            lambda c: c.infer(self.model_name, [hu_input, spacing_input], outputs=outputs),
        )
        values: dict[str, float] = {}
        for name in scalars:
            array = result.as_numpy(output_name(name))
            if array is None or array.size != 1:
                raise self._fail(TritonServerError, f"reply lacks a scalar {output_name(name)}")
            values[name] = float(array.reshape(-1)[0])
        tensors: dict[str, np.ndarray] = {}
        for name in arrays:
            array = result.as_numpy(name)
            if array is None or array.shape != hu.shape:
                raise self._fail(TritonServerError, f"reply lacks a {hu.shape} {name}")
            tensors[name] = array
        version = result.get_response().get("model_version")
        if version:
            self._served_version = str(version)
        return values, tensors

    def model_version(self) -> str:
        """Version of the model that served the last request (asks the server before that)."""
        if self._served_version is None:
            metadata = self._call("model metadata", lambda c: c.get_model_metadata(self.model_name))
            versions = [str(v) for v in metadata.get("versions", [])]
            if not versions:
                raise self._fail(TritonServerError, "the server lists no model version")
            self._served_version = max(versions, key=lambda v: (len(v), v))
        return self._served_version

    def is_ready(self) -> bool:
        """Tell whether the server is up and the model ready; never raises."""
        try:
            return self._call("readiness", lambda c: bool(c.is_model_ready(self.model_name)))
        except TritonError as e:
            logger.debug("Triton not ready: %s", e)
            return False

    def check_ready(self) -> None:
        """Raise ``TritonUnavailable`` / ``TritonServerError`` unless the model is ready."""
        if not self._call("readiness", lambda c: bool(c.is_model_ready(self.model_name))):
            raise self._fail(TritonServerError, "the model is not ready")

    def close(self) -> None:
        """Close this thread's connection (other threads' clients close when they end)."""
        self._reset()

    def __enter__(self) -> TritonQuantifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class TritonSlices(TritonQuantifier):
    """The slice network on Triton (``lesion_unet_onnx``) as a ``segmentation.LogitsFn``."""

    def __init__(self, url: str, model_name: str = SLICE_MODEL, timeout_s: float = 60.0) -> None:
        super().__init__(url, model_name=model_name, timeout_s=timeout_s)

    def __call__(self, slices: np.ndarray) -> np.ndarray:
        """Logits (n, 2, s, s) of (n, 1, s, s) float32 network inputs."""
        batch = np.ascontiguousarray(slices, dtype=np.float32)
        tensor = httpclient.InferInput("SLICES", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch, binary_data=True)
        wanted = [httpclient.InferRequestedOutput("LOGITS", binary_data=True)]
        result = self._call(
            f"inference on {len(batch)} slices",
            lambda c: c.infer(self.model_name, [tensor], outputs=wanted),
        )
        logits = result.as_numpy("LOGITS")
        if logits is None or logits.shape[0] != batch.shape[0]:
            raise self._fail(TritonServerError, "reply lacks LOGITS for every slice")
        return np.asarray(logits)
