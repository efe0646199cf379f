"""ICU and ventilator census changes read from FHIR R4 Encounters and Procedures.

**ICU stays** (Encounter, class ``IMP``). An Encounter is an ICU stay when its ``type`` carries
SNOMED CT 305351004 (admission to ICU) or one of its ``location`` entries is an ICU: a contained
Location (``#id``) whose ``type`` is HL7 v3 RoleCode ``ICU``, a location displayed ``ICU``, or a
``Location/<id>`` reference whose id the caller knows as an ICU (the capacity Locations of
:mod:`triage.capacity.locations`). When that ICU location has a period of its own (a transfer from
a ward), its period counts; otherwise the Encounter's: ``in-progress`` (or an ``active`` ICU
location) means the patient is in the unit since the start; ``finished`` (or a ``completed`` ICU
location: a transfer out) means they left at the end. The unit is the id of a referenced
``Location/<id>``; a contained or display-only ICU is the hospital's ICU (unit ``None``).

**Invasive mechanical ventilation** (Procedure). A Procedure whose ``code`` or ``category``
carries SNOMED CT 1258985005 (invasive mechanical ventilation, regime/therapy) or 40617009
(artificial ventilation) is a ventilator in use: ``in-progress`` with ``performedPeriod.start``
and no end starts it, ``completed`` or ``stopped`` with ``performedPeriod.end`` ends it.
Non-invasive ventilation (SNOMED CT 428311008) is not counted. The unit is the id of
``Procedure.location`` (``Location/<id>``), else the unit where the patient is in the ICU.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from triage.fhir.codes import (
    ENCOUNTER_CLASS_INPATIENT,
    ICU_LOCATION_DISPLAY,
    ICU_LOCATION_TYPE,
    CodeSystem,
    Coding,
    is_icu_encounter,
)

INVASIVE_VENTILATION = Coding(
    CodeSystem.SNOMED_CT, "1258985005", "Invasive mechanical ventilation (regime/therapy)"
)
"""Procedure.code (or category) of invasive mechanical ventilation: what we write."""

VENTILATION_CODES = frozenset(
    {INVASIVE_VENTILATION.code, "40617009"}  # 40617009: Artificial ventilation (regime/therapy)
)
"""SNOMED CT codes read as a ventilator in use (no subsumption: no terminology server here)."""


class CensusChangeValues(StrEnum):
    """What changes an ICU unit's census (closed list; the one vocabulary of ``capacity.events``).

    FHIR gives the first four (:func:`census_changes`); ``pipeline_risk`` is a scored CT: a
    patient who may need a bed or a ventilator soon, weighed by their ventilation risk.
    """

    ICU_ADMISSION = "icu_admission"
    ICU_DISCHARGE = "icu_discharge"
    PIPELINE_RISK = "pipeline_risk"
    VENTILATION_START = "ventilation_start"
    VENTILATION_END = "ventilation_end"


@dataclass(frozen=True)
class CensusChange:
    """A patient entering or leaving an ICU bed or a ventilator at ``at``, in ``unit``."""

    kind: CensusChangeValues
    at: datetime
    unit: str | None = None


@dataclass(frozen=True)
class IcuChange:
    """A patient entering (``admitted``) or leaving the ICU at ``at``."""

    admitted: bool
    at: datetime
    unit: str | None = None


def census_changes(
    resource: dict[str, Any], icu_locations: frozenset[str] = frozenset()
) -> list[CensusChange]:
    """Every census change a resource implies (an Encounter or a Procedure), maybe none."""
    icu = icu_change(resource, icu_locations)
    if icu is not None:
        kind = (
            CensusChangeValues.ICU_ADMISSION if icu.admitted else CensusChangeValues.ICU_DISCHARGE
        )
        return [CensusChange(kind, icu.at, icu.unit)]
    ventilation = ventilation_change(resource)
    return [ventilation] if ventilation is not None else []


def census_candidate(resource: dict[str, Any]) -> bool:
    """Whether ingress must pass a resource on for the census (before ICU Locations are known).

    True for what :func:`census_changes` reads without help, and for an inpatient Encounter at a
    ``Location/<id>`` (the worker knows which Locations are ICUs).
    """
    if census_changes(resource):
        return True
    if resource.get("resourceType") != "Encounter":
        return False
    if (resource.get("class") or {}).get("code") != ENCOUNTER_CLASS_INPATIENT.code:
        return False
    return any(_location_id(loc) for loc in resource.get("location") or [])


def icu_change(
    resource: dict[str, Any], icu_locations: frozenset[str] = frozenset()
) -> IcuChange | None:
    """The ICU census change an Encounter implies, or None for anything else."""
    if resource.get("resourceType") != "Encounter":
        return None
    icu_stay = _icu_location(resource, icu_locations)
    if icu_stay is None and not is_icu_encounter(resource):
        return None
    if (resource.get("class") or {}).get("code") != ENCOUNTER_CLASS_INPATIENT.code:
        return None
    unit = _location_id(icu_stay) if icu_stay is not None else None
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
        return _icu(True, period["start"], unit)
    if left and period.get("end"):
        return _icu(False, period["end"], unit)
    return None


def ventilation_change(resource: dict[str, Any]) -> CensusChange | None:
    """The ventilator census change a Procedure implies, or None for anything else."""
    if resource.get("resourceType") != "Procedure" or not _codes_ventilation(resource):
        return None
    period = resource.get("performedPeriod") or resource.get("occurrencePeriod") or {}  # R4, R5
    status = resource.get("status")
    unit = _location_id({"location": resource.get("location") or {}})
    if status == "in-progress" and period.get("start") and not period.get("end"):
        at = parse_instant(period["start"])
        kind = CensusChangeValues.VENTILATION_START
    elif status in {"completed", "stopped"} and period.get("end"):
        at = parse_instant(period["end"])
        kind = CensusChangeValues.VENTILATION_END
    else:
        return None
    return CensusChange(kind, at, unit) if at is not None else None


def parse_instant(when: str) -> datetime | None:
    """A FHIR dateTime as an aware datetime (UTC when no offset is given); None if partial."""
    try:
        moment = datetime.fromisoformat(str(when).replace("Z", "+00:00"))
    except ValueError:
        return None  # a partial date (YYYY-MM) cannot place a census change
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _codes_ventilation(resource: dict[str, Any]) -> bool:
    concepts = [resource.get("code") or {}, *(_as_list(resource.get("category")))]
    return any(
        coding.get("system") == CodeSystem.SNOMED_CT.value
        and coding.get("code") in VENTILATION_CODES
        for concept in concepts
        if isinstance(concept, dict)
        for coding in concept.get("coding") or []
        if isinstance(coding, dict)
    )


def _as_list(value: Any) -> list[Any]:
    # R4 Procedure.category is one CodeableConcept; R5 made it a list.
    if isinstance(value, list):
        return value
    return [value] if isinstance(value, dict) else []


def _icu_location(resource: dict[str, Any], icu_locations: frozenset[str]) -> dict[str, Any] | None:
    contained = {
        f"#{c.get('id')}": c
        for c in resource.get("contained") or []
        if isinstance(c, dict) and c.get("resourceType") == "Location"
    }
    for loc in resource.get("location") or []:
        if not isinstance(loc, dict):
            continue
        ref = loc.get("location") or {}
        display = (ref.get("display") or "").strip().upper()
        if display in {ICU_LOCATION_DISPLAY, ICU_LOCATION_TYPE.code}:
            return dict(loc)
        target = contained.get(str(ref.get("reference", "")))
        if target is not None and is_icu_location(target):
            return dict(loc)
        location_id = _location_id(loc)
        if location_id is not None and location_id in icu_locations:
            return dict(loc)
    return None


def is_icu_location(location: dict[str, Any]) -> bool:
    """Whether a FHIR Location is typed as an ICU (HL7 v3 RoleCode ``ICU``)."""
    return any(
        coding.get("system") == ICU_LOCATION_TYPE.system.value
        and coding.get("code") == ICU_LOCATION_TYPE.code
        for concept in location.get("type") or []
        if isinstance(concept, dict)
        for coding in concept.get("coding") or []
        if isinstance(coding, dict)
    )


def _location_id(loc: dict[str, Any] | None) -> str | None:
    """``<id>`` of a ``Location/<id>`` reference in an Encounter.location entry (else None)."""
    if not loc:
        return None
    reference = str((loc.get("location") or {}).get("reference", "")).split("/_history", 1)[0]
    kind, _, ident = reference.rpartition("/")
    if kind.rsplit("/", 1)[-1] != "Location" or not ident:
        return None
    return ident


def _icu(admitted: bool, when: str, unit: str | None) -> IcuChange | None:
    moment = parse_instant(when)
    return IcuChange(admitted=admitted, at=moment, unit=unit) if moment is not None else None
