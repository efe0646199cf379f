"""Typed errors of the synthetic cohort generator and of cohort readers.

::

    TriageError (triage.exceptions)
    └── CohortError  (reason: CohortErrorReason)  a cohort we cannot write or read
"""

from __future__ import annotations

from enum import StrEnum

from triage.exceptions import TriageError


class CohortErrorReason(StrEnum):
    """Why a cohort could not be generated or read (closed list)."""

    INVALID_PARAMETER = "invalid_parameter"
    OUTPUT_NOT_EMPTY = "output_not_empty"
    MISSING_FILE = "missing_file"
    INVALID_MANIFEST = "invalid_manifest"
    INVALID_OUTCOMES = "invalid_outcomes"


class CohortError(TriageError):
    """A cohort that cannot be generated (bad parameters) or read (missing / malformed files)."""

    reason: CohortErrorReason

    def __init__(self, reason: CohortErrorReason, detail: str) -> None:
        super().__init__(reason, detail)
