"""ICU census changes read from FHIR R4 Encounters (admissions to and discharges from an ICU).

An Encounter counts as an ICU stay when one of its locations, its type or its service type is
coded ``ICU`` in HL7 v3 RoleCode (the code FHIR's Location.type value set uses for an intensive
care unit) or names an intensive care unit. ``in-progress`` means the patient is in the unit
since ``period.start``; ``finished`` means they left at ``period.end``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
ICU_ROLE_CODE = "ICU"
_ICU_WORDS = ("icu", "intensive care")


@dataclass(frozen=True)
class IcuChange:
    """A patient entering (``admitted``) or leaving the ICU at ``at``."""

    admitted: bool
    at: datetime


def _codings(concept: Any) -> Iterator[dict[str, Any]]:
    if isinstance(concept, dict):
        yield from (c for c in concept.get("coding", []) if isinstance(c, dict))


def _names_icu(text: Any) -> bool:
    return isinstance(text, str) and any(word in text.lower() for word in _ICU_WORDS)


def is_icu_encounter(encounter: dict[str, Any]) -> bool:
    """Whether an Encounter resource describes a stay in an intensive care unit."""
    concepts: list[Any] = [encounter.get("serviceType"), *encounter.get("type", [])]
    for location in encounter.get("location", []):
        concepts.append(location.get("physicalType"))
        reference = location.get("location", {})
        if _names_icu(reference.get("display")):
            return True
    return any(
        coding.get("code") == ICU_ROLE_CODE or _names_icu(coding.get("display"))
        for concept in concepts
        for coding in _codings(concept)
    )


def icu_change(resource: dict[str, Any]) -> IcuChange | None:
    """The census change an Encounter implies, or None for anything else."""
    if resource.get("resourceType") != "Encounter" or not is_icu_encounter(resource):
        return None
    period = resource.get("period", {})
    status = resource.get("status")
    if status == "in-progress" and period.get("start"):
        return IcuChange(admitted=True, at=datetime.fromisoformat(period["start"]))
    if status == "finished" and period.get("end"):
        return IcuChange(admitted=False, at=datetime.fromisoformat(period["end"]))
    return None
