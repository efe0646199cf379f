"""Reading FHIR R4 resources safely: codings, times, statuses, quantities in canonical units.

Small pure helpers shared by the clinical context fold (:mod:`triage.fhir.context`) and the
feature extraction (:mod:`triage.fhir.features`). Bad values raise :class:`FhirRejected`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from triage.exceptions import FhirRejected, FhirRejectionReason
from triage.fhir.codes import (
    OBSERVATION_DEFINITIONS,
    CodeSystem,
    ConditionKey,
    ObservationKey,
    condition_key_for,
)
from triage.fhir.diagnoses import DiagnosisKey, diagnosis_key_for
from triage.fhir.parse import FhirVersionValues
from triage.fhir.parse import validate_resource as _validate


def require_subject(resource: dict[str, Any]) -> None:
    """Reject a Condition/Observation naming no patient (R4 Observation.subject is optional)."""
    subject = resource.get("subject")
    if not (isinstance(subject, dict) and subject.get("reference")):
        raise FhirRejected(
            FhirRejectionReason.MISSING_SUBJECT,
            "no subject reference",
            resource.get("resourceType"),
            resource.get("id"),
        )


def condition_key(system: str, code: str) -> ConditionKey | DiagnosisKey | None:
    """The comorbidity or diagnosis a Condition coding means (the two value sets are disjoint)."""
    return condition_key_for(system, code) or diagnosis_key_for(system, code)


def first_key(concept: Any, lookup: Any) -> Any:
    """The first coding of ``concept`` that ``lookup(system, code)`` knows, mapped by it."""
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or []:
        key = lookup(str(coding.get("system", "")), str(coding.get("code", "")))
        if key is not None:
            return key
    return None


def first_code(concept: Any, system: str) -> str | None:
    """The first code of ``concept`` in ``system`` (``None`` if it has none)."""
    if isinstance(concept, dict):
        for coding in concept.get("coding") or []:
            if coding.get("system") == system and coding.get("code"):
                return str(coding["code"])
    return None


def time_of(resource: dict[str, Any], datetime_field: str, period_field: str) -> str | None:
    """A dateTime (or a Period's start) as fixed-width ISO UTC; None if absent or unreadable."""
    period = resource.get(period_field) or {}
    raw = resource.get(datetime_field) or (
        period.get("start") if isinstance(period, dict) else None
    )
    try:
        return iso_utc(raw) if raw else None
    except ValueError:
        return None


def status_code(concept: Any) -> str | None:
    """The code of a status CodeableConcept (clinical or verification status)."""
    if isinstance(concept, dict):
        for coding in concept.get("coding") or []:
            if coding.get("code"):
                return str(coding["code"])
    return None


def effective_time(resource: dict[str, Any]) -> str | None:
    """An Observation's effective time (dateTime, instant or period start) in ISO UTC."""
    period = resource.get("effectivePeriod") or {}
    raw = (
        resource.get("effectiveDateTime")
        or resource.get("effectiveInstant")
        or period.get("end")
        or period.get("start")
        or resource.get("issued")
    )
    if not raw:
        return None
    try:
        return iso_utc(raw)
    except ValueError as e:
        raise FhirRejected(
            FhirRejectionReason.VALIDATION_FAILED,
            f"bad effective time {str(raw)[:40]!r}",
            "Observation",
            resource.get("id"),
        ) from e


def iso_utc(raw: Any) -> str:
    """FHIR date/dateTime/instant text -> fixed-width ISO UTC (string order is time order)."""
    text = str(raw).replace("Z", "+00:00")
    if len(text) == 4:  # FHIR partial dates: YYYY or YYYY-MM
        text += "-01-01"
    elif len(text) == 7:
        text += "-01"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:  # a bare date (or a date-time without zone): take it as UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def resource_key(resource: dict[str, Any]) -> str:
    """A stable key of a resource: its id, else a hash of its content."""
    if resource.get("id"):
        return str(resource["id"])
    blob = json.dumps(resource, sort_keys=True).encode("utf-8")
    return "sha256-" + hashlib.sha256(blob).hexdigest()[:16]


def validate_resource(
    resource: dict[str, Any], version: FhirVersionValues = FhirVersionValues.R4
) -> None:
    """Validate a FHIR resource (R4 by default); raises :class:`FhirRejected`."""
    _validate(resource, version)


def convert_quantity(
    key: ObservationKey, quantity: dict[str, Any], resource: dict[str, Any]
) -> float:
    """Return a ``valueQuantity`` in the canonical unit of ``key``; reject bad units and values."""
    rid = resource.get("id")
    system = quantity.get("system")
    unit = quantity.get("code") if system == CodeSystem.UCUM else None
    if unit is None and system is None:
        unit = quantity.get("unit")  # display unit only; accepted when it is a known UCUM string
    conversions = OBSERVATION_DEFINITIONS[key].conversions
    conversion = conversions.get(str(unit)) if unit is not None else None
    if conversion is None or quantity.get("value") is None:
        raise FhirRejected(
            FhirRejectionReason.UNIT_MISMATCH,
            f"{key.value}: unit {unit!r} (system {system!r}) is not one of {sorted(conversions)}",
            "Observation",
            rid,
        )
    scale, offset = conversion
    value = float(quantity["value"]) * scale + offset
    definition = OBSERVATION_DEFINITIONS[key]
    if not (definition.plausible_min <= value <= definition.plausible_max):
        raise FhirRejected(
            FhirRejectionReason.IMPLAUSIBLE_VALUE,
            f"{key.value} = {value:g} {definition.unit} outside "
            f"[{definition.plausible_min:g}, {definition.plausible_max:g}]",
            "Observation",
            rid,
        )
    return value
