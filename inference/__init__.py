"""CT series -> HU volume -> lung and lesion biomarkers, in process or on Triton.

This module is the package's public API: other packages import these names, never the modules
behind them (an import-linter contract). Inside: ``volume``/``headers``/``frames``/``uids``
(DICOM loading and acceptance), ``chest`` (is it a chest CT), ``biomarkers``/``regional``/``rsna``
(measures and the rule-based RSNA category), ``segmentation`` (the learned model), ``client``
(Triton), ``quantify`` (what ``ctriage quantify`` runs), ``dicom_results`` (SEG/SR), ``sandbox``.
The Triton model repository is ``inference/model_repository``.
"""

from inference.biomarkers import quantify_threshold, threshold_masks
from inference.chest import check_chest
from inference.client import (
    LARGE_MODEL,
    THRESHOLD_MODEL,
    UNET_MODEL,
    StudyResult,
    TritonQuantifier,
)
from inference.dicom_results import PriorComparison, results_for_volume
from inference.exceptions import (
    InferenceError,
    InferenceRejected,
    InvalidVolume,
    SeriesRejected,
    SeriesRejectionReason,
    TritonError,
    TritonTimeout,
    TritonUnavailable,
)
from inference.headers import quiet_pydicom, raw_text, read_headers
from inference.masks import load_masks, masks_path, save_masks
from inference.quantify import (
    MODELS,
    NETWORKS,
    UNITS,
    image_files,
    logits_fn,
    quantify_images,
    quantify_series,
    write_json,
    write_series,
)
from inference.rsna import rsna_category
from inference.sandbox import SandboxedReader
from inference.uids import check_uid, is_conformant_uid, uid_key, uid_refusal
from inference.volume import CtVolume, load_series, study_datetime

__all__ = [
    "PriorComparison",
    "CtVolume",
    "InferenceError",
    "InferenceRejected",
    "InvalidVolume",
    "LARGE_MODEL",
    "MODELS",
    "NETWORKS",
    "SandboxedReader",
    "SeriesRejected",
    "SeriesRejectionReason",
    "StudyResult",
    "THRESHOLD_MODEL",
    "TritonError",
    "TritonQuantifier",
    "TritonTimeout",
    "TritonUnavailable",
    "UNET_MODEL",
    "UNITS",
    "check_chest",
    "check_uid",
    "image_files",
    "is_conformant_uid",
    "load_masks",
    "load_series",
    "logits_fn",
    "masks_path",
    "quantify_images",
    "quantify_series",
    "quantify_threshold",
    "quiet_pydicom",
    "raw_text",
    "read_headers",
    "results_for_volume",
    "rsna_category",
    "save_masks",
    "study_datetime",
    "threshold_masks",
    "uid_key",
    "uid_refusal",
    "write_json",
    "write_series",
]
