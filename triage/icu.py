"""ICU census changes read from FHIR R4 Encounters (admissions to and discharges from an ICU).

Which Encounters are ICU stays is decided by :func:`triage.codes.is_icu_encounter`.
``in-progress`` means the patient is in the unit since ``period.start``; ``finished`` means they
left at ``period.end``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from triage.codes import is_icu_encounter


@dataclass(frozen=True)
class IcuChange:
    """A patient entering (``admitted``) or leaving the ICU at ``at``."""

    admitted: bool
    at: datetime


def icu_change(resource: dict[str, Any]) -> IcuChange | None:
    """The census change an Encounter implies, or None for anything else."""
    if resource.get("resourceType") != "Encounter" or not is_icu_encounter(resource):
        return None
    period = resource.get("period") or {}
    status = resource.get("status")
    if status == "in-progress" and period.get("start"):
        return IcuChange(admitted=True, at=datetime.fromisoformat(period["start"]))
    if status == "finished" and period.get("end"):
        return IcuChange(admitted=False, at=datetime.fromisoformat(period["end"]))
    return None
