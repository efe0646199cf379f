"""Errors of capacity forecasting on daily series.

TriageError
 └── CapacityDataRejected   a daily series (CSV) that cannot be back-tested or forecast, or a
                            capacity file (FHIR Locations) that cannot be read
"""

from __future__ import annotations

from enum import StrEnum

from triage.exceptions import TriageError


class CapacityDataReason(StrEnum):
    """Why a daily capacity series was refused (closed list)."""

    UNREADABLE = "unreadable"
    MISSING_COLUMN = "missing_column"
    BAD_DATE = "bad_date"
    DUPLICATE_DATE = "duplicate_date"
    NEGATIVE_COUNT = "negative_count"
    TOO_SHORT = "too_short"
    NO_ADMISSIONS = "no_admissions"  # a length of stay cannot be fitted without them
    UNKNOWN_REGION = "unknown_region"
    INVALID_LOCATION = "invalid_location"


class CapacityDataRejected(TriageError):
    """A daily series that cannot be used; ``reason`` says why."""

    reason: CapacityDataReason

    def __init__(self, reason: CapacityDataReason, detail: str) -> None:
        super().__init__(reason, detail)
