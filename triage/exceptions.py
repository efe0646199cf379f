"""Typed errors raised by the triage libraries.

Every error carries a reason code from a closed ``StrEnum`` so that the stream wiring can
dead-letter it and count it by reason without parsing messages::

    TriageError
    ├── FhirRejected        (FhirRejectionReason)    a FHIR resource we will not use
    ├── ModelArtifactError  (ModelArtifactReason)    a model file or card we cannot trust
    ├── TrainingDataError   (TrainingDataReason)     a cohort we cannot train on
    ├── ConfigRejected      (ConfigRejectionReason)  an alert policy / forecast input out of range
    └── ValidationRefused   (ValidationReason)       outcomes we cannot validate or recalibrate on
"""

from __future__ import annotations

from enum import StrEnum


class FhirRejectionReason(StrEnum):
    """Why a FHIR resource was rejected (closed list)."""

    INVALID_JSON = "invalid_json"  # the bytes are not JSON (or not UTF-8)
    NOT_A_RESOURCE = "not_a_resource"  # valid JSON, but not an object with a resourceType
    UNREADABLE_FILE = "unreadable_file"  # a file that could not be read at all
    UNKNOWN_RESOURCE_TYPE = "unknown_resource_type"
    VALIDATION_FAILED = "validation_failed"
    MISSING_SUBJECT = "missing_subject"
    UNIT_MISMATCH = "unit_mismatch"
    IMPLAUSIBLE_VALUE = "implausible_value"
    UNKNOWN_PATIENT = "unknown_patient"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNSUPPORTED_BUNDLE_TYPE = "unsupported_bundle_type"
    R5_CONTENT_AS_R4 = "r5_content_as_r4"


class ModelArtifactReason(StrEnum):
    """Why a risk model artifact could not be loaded (closed list)."""

    MISSING_FILE = "missing_file"
    MISSING_CARD = "missing_card"
    INVALID_CARD = "invalid_card"
    FEATURE_MISMATCH = "feature_mismatch"
    VERSION_MISMATCH = "version_mismatch"
    UNREADABLE_MODEL = "unreadable_model"


class TrainingDataReason(StrEnum):
    """Why a training cohort was refused (closed list)."""

    MISSING_FILE = "missing_file"
    INVALID_MANIFEST = "invalid_manifest"
    MISSING_OUTCOME = "missing_outcome"
    TOO_FEW_STUDIES = "too_few_studies"
    SINGLE_CLASS = "single_class"
    UNKNOWN_TARGET = "unknown_target"


class ConfigRejectionReason(StrEnum):
    """Why an alert policy or forecast input was refused (closed list)."""

    THRESHOLD_OUT_OF_RANGE = "threshold_out_of_range"
    LEVELS_NOT_ORDERED = "levels_not_ordered"
    EMPTY_VERSION = "empty_version"
    PROBABILITY_OUT_OF_RANGE = "probability_out_of_range"
    NEGATIVE_CAPACITY = "negative_capacity"
    INVALID_LOS_PARAMETERS = "invalid_los_parameters"
    INVALID_ARRIVALS = "invalid_arrivals"
    NAIVE_DATETIME = "naive_datetime"
    # threshold administration (issue 6)
    UNKNOWN_LEVEL = "unknown_level"
    MISSING_LEVEL = "missing_level"
    EMPTY_REASON = "empty_reason"
    EMPTY_USER = "empty_user"
    VERSION_CONFLICT = "version_conflict"
    UNKNOWN_HOSPITAL = "unknown_hospital"
    # a site's risk calibration carried by the policy (issue 13)
    INVALID_CALIBRATION = "invalid_calibration"
    CALIBRATION_MODEL_MISMATCH = "calibration_model_mismatch"


class ValidationReason(StrEnum):
    """Why a table of outcomes cannot validate or recalibrate a risk model (closed list)."""

    NO_OUTCOME_COLUMN = "no_outcome_column"
    NO_SCORED_ROWS = "no_scored_rows"
    SINGLE_CLASS = "single_class"
    TOO_FEW_EVENTS = "too_few_events"
    TOO_FEW_NON_EVENTS = "too_few_non_events"
    UNKNOWN_OUTCOME = "unknown_outcome"


class TriageError(Exception):
    """Base class of every triage error; ``reason`` is a closed-list code, ``detail`` free text."""

    reason: StrEnum

    def __init__(self, reason: StrEnum, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class FhirRejected(TriageError):
    """A FHIR resource that is invalid, unusable or implausible."""

    reason: FhirRejectionReason

    def __init__(
        self,
        reason: FhirRejectionReason,
        detail: str,
        resource_type: str | None = None,
        resource_id: str | None = None,
    ) -> None:
        where = f"{resource_type or '?'}/{resource_id or '?'}"
        super().__init__(reason, f"{where}: {detail}")
        self.why = detail  # without the resource id: safe for an OperationOutcome at ingress
        self.resource_type = resource_type
        self.resource_id = resource_id


class ModelArtifactError(TriageError):
    """A risk model file or its card is missing, unreadable or does not match the code."""

    reason: ModelArtifactReason

    def __init__(self, reason: ModelArtifactReason, detail: str) -> None:
        super().__init__(reason, detail)


class TrainingDataError(TriageError):
    """The cohort given for training is incomplete or degenerate."""

    reason: TrainingDataReason

    def __init__(self, reason: TrainingDataReason, detail: str) -> None:
        super().__init__(reason, detail)


class ConfigRejected(TriageError):
    """An alert policy or forecast parameter is out of its valid range."""

    reason: ConfigRejectionReason

    def __init__(self, reason: ConfigRejectionReason, detail: str) -> None:
        super().__init__(reason, detail)


class ValidationRefused(TriageError):
    """A table of outcomes too small or degenerate to validate a model or recalibrate it."""

    reason: ValidationReason

    def __init__(self, reason: ValidationReason, detail: str) -> None:
        super().__init__(reason, detail)
