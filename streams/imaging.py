"""The imaging quantifier that training on a synthetic cohort hands to :mod:`triage`.

``triage`` never imports the imaging code: :func:`triage.risk.synthetic.train_from_cohort` takes
a biomarker function, and this module, where ``inference`` and ``triage`` are composed, supplies
the DICOM one. A series the imaging code refuses becomes an exclusion reason, not an error.
"""

from __future__ import annotations

import logging
from pathlib import Path

from inference import InferenceError, SeriesRejected, load_series, quantify_threshold

logger = logging.getLogger(__name__)

DICOM_BIOMARKER_SOURCE = (
    "inference.volume.load_series + inference.biomarkers.quantify_threshold on each study's DICOM"
)


def dicom_biomarkers(study_dir: Path) -> dict[str, float] | str:
    """Threshold biomarkers of one study folder, or why the study is excluded from training."""
    try:
        volume = load_series(Path(study_dir))
        return quantify_threshold(volume.hu, volume.spacing_mm).as_dict()
    except SeriesRejected as e:
        logger.warning("excluded %s from training: %s", study_dir, e)
        return f"series_rejected:{e.reason}"
    except InferenceError as e:
        logger.warning("excluded %s from training: %s", study_dir, e)
        return type(e).__name__
