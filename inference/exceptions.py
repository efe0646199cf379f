"""Errors raised by the inference package.

Hierarchy::

    InferenceError                 base of everything raised here
    ├── SeriesRejected             a DICOM series cannot become a CT volume, or the volume is
    │                              no chest CT; ``reason`` is a SeriesRejectionReason (listed
    │                              in docs/ingestion-reasons.md), ``detail`` says what was seen
    ├── InvalidVolume              an in-memory volume or spacing cannot be quantified
    └── TritonError                talking to the Triton server failed; carries model, url, timeout
        ├── TritonUnavailable      nothing answers at the url (connection refused, DNS, reset)
        ├── TritonTimeout          the server did not answer within ``timeout_s``
        ├── TritonServerError      the server answered with an error that is not the request's fault
        └── InferenceRejected      the model answered "bad request" (HTTP 400): do not retry

Callers retry ``TritonUnavailable`` and ``TritonTimeout``; ``InferenceRejected`` and
``SeriesRejected`` are properties of the input and are dead-lettered at once.
"""

from __future__ import annotations

from enum import StrEnum


class SeriesRejectionReason(StrEnum):
    """Closed list of reasons a DICOM series is refused before quantification."""

    NOT_DICOM = "not_dicom"  # no file under the path parses as DICOM
    MALFORMED_HEADER = "malformed_header"  # a header value cannot be read as its type
    NO_PIXEL_DATA = "no_pixel_data"  # images without Pixel Data or without an image pixel module
    TRUNCATED_FILE = "truncated_file"  # a DICOM file ends early (header or pixel data cut off)
    CORRUPT_PIXEL_DATA = "corrupt_pixel_data"  # pixel data present but the decoder refuses it
    NON_CT_MODALITY = "non_ct_modality"  # no CT image at all
    LOCALIZER_ONLY = "localizer_only"  # the only CT images are scouts / localizers
    MIXED_SERIES = "mixed_series"  # images of one series disagree, or two series tie
    TOO_FEW_SLICES = "too_few_slices"  # no CT series has enough slices for a volume
    NON_UNIFORM_SPACING = "non_uniform_spacing"  # uneven slice gaps: missing slices
    GANTRY_TILT = "gantry_tilt"  # slices shifted in-plane along the stack (tilted acquisition)
    IMPLAUSIBLE_DIMENSIONS = "implausible_dimensions"  # matrix, spacing, orientation out of range
    UNSUPPORTED_TRANSFER_SYNTAX = "unsupported_transfer_syntax"  # lossy or no decoder installed
    HOSTILE_UID = "hostile_uid"  # a UID with control characters, path separators, non-ASCII
    EMPTY_INPUT = "empty_input"  # no file at the path
    RESOURCE_LIMIT = "resource_limit"  # files, bytes, slices, voxels or memory over the limits
    READER_CRASHED = "reader_crashed"  # the sandboxed reader process died (decoder crash, OOM)
    READER_TIMEOUT = "reader_timeout"  # the sandboxed reader did not finish in its time budget
    NO_LUNG_FOUND = "no_lung_found"  # no air-filled lung of plausible size: not a chest CT


class InferenceError(Exception):
    """Base class of every error raised by :mod:`inference`."""


class SeriesRejected(InferenceError):
    """A DICOM series was refused; ``reason`` is machine-readable, ``detail`` is for people."""

    def __init__(self, reason: SeriesRejectionReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[SeriesRejected], tuple[SeriesRejectionReason, str]]:
        # crosses the process boundary of the sandboxed reader intact
        return (type(self), (self.reason, self.detail))


class InvalidVolume(InferenceError, ValueError):
    """A volume handed to a quantifier has the wrong shape, dtype or spacing."""


class TritonError(InferenceError):
    """A call to the Triton server failed; the message names model, url and timeout."""

    def __init__(self, message: str, *, model_name: str, url: str, timeout_s: float) -> None:
        super().__init__(f"{message} (model {model_name!r} at {url}, timeout {timeout_s:g} s)")
        self.model_name = model_name
        self.url = url
        self.timeout_s = timeout_s


class TritonUnavailable(TritonError):
    """No Triton server answers at the url (refused, unreachable, reset): retry later."""


class TritonTimeout(TritonError):
    """The server did not answer in time: retry later, or raise ``timeout_s``."""


class TritonServerError(TritonError):
    """The server answered with an error (5xx, model not ready, malformed reply)."""


class InferenceRejected(TritonError):
    """The model refused the request as invalid (HTTP 400): retrying will not help."""
