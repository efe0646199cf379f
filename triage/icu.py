"""ICU census changes read from FHIR R4 Encounters (admissions to, transfers into, discharges).

Which Encounters are ICU stays is decided by :func:`triage.codes.is_icu_encounter`. When the
Encounter lists the ICU among its locations with a period of its own (a transfer from a ward),
that period counts; otherwise the Encounter's: ``in-progress`` (or an ``active`` ICU location)
means the patient is in the unit since the start; ``finished`` (or a ``completed`` ICU location)
means they left at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from triage.codes import ICU_LOCATION_DISPLAY, ICU_LOCATION_TYPE, is_icu_encounter


@dataclass(frozen=True)
class IcuChange:
    """A patient entering (``admitted``) or leaving the ICU at ``at``."""

    admitted: bool
    at: datetime


def icu_change(resource: dict[str, Any]) -> IcuChange | None:
    """The census change an Encounter implies, or None for anything else."""
    if resource.get("resourceType") != "Encounter" or not is_icu_encounter(resource):
        return None
    icu_stay = _icu_location(resource)
    if icu_stay is not None and isinstance(icu_stay.get("period"), dict):
        period = icu_stay["period"]
        status = icu_stay.get("status")
        admitted = status in {"active", None} and resource.get("status") == "in-progress"
        left = status == "completed" or resource.get("status") == "finished"
    else:
        period = resource.get("period") or {}
        admitted = resource.get("status") == "in-progress"
        left = resource.get("status") == "finished"
    if admitted and period.get("start") and not period.get("end"):
        return _change(True, period["start"])
    if left and period.get("end"):
        return _change(False, period["end"])
    return None


def _icu_location(resource: dict[str, Any]) -> dict[str, Any] | None:
    for loc in resource.get("location") or []:
        display = ((loc.get("location") or {}).get("display") or "").strip().upper()
        if display in {ICU_LOCATION_DISPLAY, ICU_LOCATION_TYPE.code}:
            return dict(loc)
    return None


def _change(admitted: bool, when: str) -> IcuChange | None:
    try:
        moment = datetime.fromisoformat(str(when).replace("Z", "+00:00"))
    except ValueError:
        return None  # a partial date (YYYY-MM) cannot place a census change
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return IcuChange(admitted=admitted, at=moment)
