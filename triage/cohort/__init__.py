"""Synthetic cohort generator: DICOM CT phantoms, FHIR R4 bundles, ICU census and outcomes.

The data are SYNTHETIC. They exercise the pipeline end to end and prove the plumbing; they say
nothing about clinical validity.
"""

from triage.cohort.exceptions import CohortError, CohortErrorReason
from triage.cohort.manifest import (
    CohortManifest,
    OutcomeRow,
    StudyEntry,
    load_manifest,
    load_outcomes,
)
from triage.cohort.writer import DEFAULT_START_TIME, generate_cohort

__all__ = [
    "CohortError",
    "CohortErrorReason",
    "CohortManifest",
    "DEFAULT_START_TIME",
    "OutcomeRow",
    "StudyEntry",
    "generate_cohort",
    "load_manifest",
    "load_outcomes",
]
