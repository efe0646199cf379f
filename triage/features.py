"""FHIR R4 clinical record -> model features (codes with systems, UCUM units, never free text).

:class:`ClinicalContext` is the per-patient state the stream keeps in a table: it folds FHIR
resources one at a time (:meth:`ClinicalContext.apply`, pure) and serialises to JSON.
:func:`clinical_features` reads it at the CT time; :func:`feature_vector` puts imaging biomarkers
and clinical features in the model's order. A missing value stays ``None``: nothing is imputed
(XGBoost learns a direction for missing values).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from triage.codes import (
    OBSERVATION_DEFINITIONS,
    CodeSystem,
    ConditionKey,
    ObservationCategory,
    ObservationKey,
    condition_key_for,
    observation_key_for,
)
from triage.exceptions import FhirRejected, FhirRejectionReason

logger = logging.getLogger(__name__)

IMAGING_FEATURES: tuple[str, ...] = (
    "lung_volume_ml",
    "lesion_volume_ml",
    "lesion_percent",
    "ggo_percent",
    "consolidation_percent",
    "well_aerated_percent",
)
# Feature name of each observation: key + canonical UCUM unit as a suffix.
OBSERVATION_FEATURES: dict[ObservationKey, str] = {
    ObservationKey.SPO2: "spo2_percent",
    ObservationKey.RESPIRATORY_RATE: "respiratory_rate_per_min",
    ObservationKey.HEART_RATE: "heart_rate_per_min",
    ObservationKey.TEMPERATURE: "temperature_cel",
    ObservationKey.CRP: "crp_mg_per_l",
    ObservationKey.D_DIMER: "d_dimer_ng_per_ml_feu",
    ObservationKey.LYMPHOCYTES: "lymphocytes_10e3_per_ul",
    ObservationKey.LDH: "ldh_u_per_l",
}
CONDITION_FEATURES: dict[ConditionKey, str] = {key: f"has_{key.value}" for key in ConditionKey}
DEMOGRAPHIC_FEATURES: tuple[str, ...] = ("age_years", "sex_male")
CLINICAL_FEATURES: tuple[str, ...] = (
    *DEMOGRAPHIC_FEATURES,
    *CONDITION_FEATURES.values(),
    *OBSERVATION_FEATURES.values(),
)
FEATURES: tuple[str, ...] = (*IMAGING_FEATURES, *CLINICAL_FEATURES)

FEATURE_UNITS: dict[str, str] = {
    "lung_volume_ml": "mL",
    "lesion_volume_ml": "mL",
    **{name: "%" for name in IMAGING_FEATURES if name.endswith("_percent")},
    "age_years": "a",
    "sex_male": "1 (0 = female, 1 = male)",
    **{name: "1 (0 = absent, 1 = present)" for name in CONDITION_FEATURES.values()},
    **{OBSERVATION_FEATURES[k]: d.unit for k, d in OBSERVATION_DEFINITIONS.items()},
}

# Accepted UCUM units per observation -> (scale, offset) to the canonical unit of triage.codes.
UNIT_CONVERSIONS: dict[ObservationKey, dict[str, tuple[float, float]]] = {
    ObservationKey.SPO2: {"%": (1.0, 0.0)},
    ObservationKey.RESPIRATORY_RATE: {"/min": (1.0, 0.0), "{breaths}/min": (1.0, 0.0)},
    ObservationKey.HEART_RATE: {"/min": (1.0, 0.0), "{beats}/min": (1.0, 0.0)},
    ObservationKey.TEMPERATURE: {
        "Cel": (1.0, 0.0),
        "[degF]": (5 / 9, -32 * 5 / 9),
        "K": (1.0, -273.15),
    },
    ObservationKey.CRP: {"mg/L": (1.0, 0.0), "mg/dL": (10.0, 0.0), "ug/mL": (1.0, 0.0)},
    # LOINC 48065-7 is the FEU measurement, so an unannotated mass concentration is FEU too.
    ObservationKey.D_DIMER: {
        "ng/mL{FEU}": (1.0, 0.0),
        "ng/mL": (1.0, 0.0),
        "ug/mL{FEU}": (1000.0, 0.0),
        "ug/mL": (1000.0, 0.0),
        "mg/L{FEU}": (1000.0, 0.0),
        "mg/L": (1000.0, 0.0),
    },
    ObservationKey.LYMPHOCYTES: {
        "10*3/uL": (1.0, 0.0),
        "10*9/L": (1.0, 0.0),
        "10*3/mm3": (1.0, 0.0),
        "/uL": (0.001, 0.0),
        "/mm3": (0.001, 0.0),
    },
    ObservationKey.LDH: {"U/L": (1.0, 0.0), "[IU]/L": (1.0, 0.0), "ukat/L": (60.0, 0.0)},
}

_ACTIVE_CLINICAL = {"active", "recurrence", "relapse"}
_COUNTED_VERIFICATION = {"confirmed", None}  # absent verificationStatus counts as asserted
_USABLE_OBSERVATION_STATUS = {"final", "amended", "corrected", "preliminary"}
_SEX = {"male": 1.0, "female": 0.0}


class CompletenessValues(StrEnum):
    """How complete a patient's features are when scored (closed list)."""

    COMPLETE = "complete"
    NO_IMAGING = "no imaging"
    NO_CLINICAL_RECORD = "no clinical record"
    NO_VITALS_OR_LABS = "no vitals or labs yet"
    NO_LABS = "no labs yet"
    NO_VITALS = "no vitals yet"
    PARTIAL = "partial"


@dataclass
class ClinicalContext:
    """What we know of one patient's record: JSON-safe, folded one FHIR resource at a time.

    ``conditions`` is derived from ``condition_records`` (resource id -> [key, counts]) so that an
    update of one Condition (e.g. to ``resolved``) replaces its earlier version.
    ``observations`` maps an :class:`ObservationKey` value to ``[iso_time_utc, value]`` pairs in
    canonical units, sorted by time.
    """

    birth_year: int | None = None
    sex: str | None = None
    conditions: dict[str, bool] = field(default_factory=dict)
    observations: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    condition_records: dict[str, tuple[str, bool]] = field(default_factory=dict)
    resources_seen: int = 0

    def apply(self, resource: dict[str, Any]) -> ClinicalContext:
        """Return a new context with ``resource`` folded in; raises :class:`FhirRejected`.

        Every resource is validated as FHIR R4 (``fhir.resources.R4B``). Patient, Condition and
        Observation change the context; other valid resource types leave it as it is.
        """
        validate_resource(resource)
        new = copy.deepcopy(self)
        new.resources_seen += 1
        rtype = resource["resourceType"]
        if rtype == "Patient":
            new._apply_patient(resource)
        elif rtype == "Condition":
            _require_subject(resource)
            new._apply_condition(resource)
        elif rtype == "Observation":
            _require_subject(resource)
            new._apply_observation(resource)
        return new

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {
            "birth_year": self.birth_year,
            "sex": self.sex,
            "conditions": dict(self.conditions),
            "observations": {k: [[t, v] for t, v in pts] for k, pts in self.observations.items()},
            "condition_records": {k: [c, a] for k, (c, a) in self.condition_records.items()},
            "resources_seen": self.resources_seen,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClinicalContext:
        """Rebuild a context from :meth:`to_dict` output."""
        return cls(
            birth_year=data.get("birth_year"),
            sex=data.get("sex"),
            conditions={str(k): bool(v) for k, v in (data.get("conditions") or {}).items()},
            observations={
                str(k): [(str(t), float(v)) for t, v in pts]
                for k, pts in (data.get("observations") or {}).items()
            },
            condition_records={
                str(k): (str(c), bool(a))
                for k, (c, a) in (data.get("condition_records") or {}).items()
            },
            resources_seen=int(data.get("resources_seen", 0)),
        )

    def _apply_patient(self, resource: dict[str, Any]) -> None:
        birth = resource.get("birthDate")
        self.birth_year = int(str(birth)[:4]) if birth else None
        self.sex = resource.get("gender")

    def _apply_condition(self, resource: dict[str, Any]) -> None:
        key = _first_key(resource.get("code"), condition_key_for)
        if key is None:
            return
        clinical = _status_code(resource.get("clinicalStatus"))
        verification = _status_code(resource.get("verificationStatus"))
        counts = (clinical in _ACTIVE_CLINICAL) and (verification in _COUNTED_VERIFICATION)
        if clinical is None and verification in _COUNTED_VERIFICATION:
            counts = True  # R4 allows no clinicalStatus on a problem-list entry: take it as current
        self.condition_records[_resource_key(resource)] = (key.value, counts)
        keys = {c for c, _ in self.condition_records.values()}
        self.conditions = {
            c: any(a for k, a in self.condition_records.values() if k == c) for c in sorted(keys)
        }

    def _apply_observation(self, resource: dict[str, Any]) -> None:
        key = _first_key(resource.get("code"), observation_key_for)
        if key is None:
            return
        status = resource.get("status")
        quantity = resource.get("valueQuantity")
        when = _effective_time(resource)
        if status == "entered-in-error":
            self._retract(key, quantity, when, resource)
            return
        if status not in _USABLE_OBSERVATION_STATUS or quantity is None:
            return  # registered / cancelled / no numeric value (e.g. dataAbsentReason)
        if when is None:
            raise FhirRejected(
                FhirRejectionReason.VALIDATION_FAILED,
                "Observation has no effective time",
                "Observation",
                resource.get("id"),
            )
        value = convert_quantity(key, quantity, resource)
        points = set(self.observations.get(key.value, []))
        points.add((when, value))
        self.observations[key.value] = sorted(points)

    def _retract(
        self, key: ObservationKey, quantity: Any, when: str | None, resource: dict[str, Any]
    ) -> None:
        """Remove the point an ``entered-in-error`` Observation withdraws, if we hold it."""
        if not quantity or not when:
            return
        try:
            value = convert_quantity(key, quantity, resource)
        except FhirRejected:
            return  # we never stored a point with an unusable value
        points = self.observations.get(key.value, [])
        self.observations[key.value] = [p for p in points if p != (when, value)]


def validate_resource(resource: dict[str, Any]) -> None:
    """Validate a FHIR R4 resource with ``fhir.resources.R4B``; raises :class:`FhirRejected`."""
    from fhir.resources.R4B import get_fhir_model_class

    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise FhirRejected(FhirRejectionReason.INVALID_JSON, "not a JSON object with resourceType")
    rtype = resource["resourceType"]
    try:
        model = get_fhir_model_class(rtype)
    except (ValueError, KeyError, AttributeError) as e:
        raise FhirRejected(
            FhirRejectionReason.UNKNOWN_RESOURCE_TYPE, str(e), rtype, resource.get("id")
        ) from e
    try:
        model.model_validate(resource)
    except (ValidationError, ValueError, TypeError) as e:
        raise FhirRejected(
            FhirRejectionReason.VALIDATION_FAILED, str(e)[:500], rtype, resource.get("id")
        ) from e


def convert_quantity(
    key: ObservationKey, quantity: dict[str, Any], resource: dict[str, Any]
) -> float:
    """Return a ``valueQuantity`` in the canonical unit of ``key``; reject bad units and values."""
    rid = resource.get("id")
    system = quantity.get("system")
    unit = quantity.get("code") if system == CodeSystem.UCUM else None
    if unit is None and system is None:
        unit = quantity.get("unit")  # display unit only; accepted when it is a known UCUM string
    conversion = UNIT_CONVERSIONS[key].get(str(unit)) if unit is not None else None
    if conversion is None or quantity.get("value") is None:
        raise FhirRejected(
            FhirRejectionReason.UNIT_MISMATCH,
            f"{key.value}: unit {unit!r} (system {system!r}) is not one of "
            f"{sorted(UNIT_CONVERSIONS[key])}",
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


def clinical_features(
    ctx: ClinicalContext, at: datetime, window_h: float = 72
) -> dict[str, float | None]:
    """Return the clinical features at time ``at`` (timezone-aware).

    Age from the birth year, sex as 0/1, comorbidity flags (0 when the record has no such active
    condition, ``None`` when there is no record at all), and for each observation the latest
    value taken at or before ``at`` and no earlier than ``window_h`` hours before it.
    """
    if at.tzinfo is None:
        raise ValueError("clinical_features needs a timezone-aware time")
    out: dict[str, float | None] = dict.fromkeys(CLINICAL_FEATURES)
    out["age_years"] = float(at.year - ctx.birth_year) if ctx.birth_year is not None else None
    out["sex_male"] = _SEX.get(ctx.sex or "")
    if ctx.resources_seen > 0:
        for condition, name in CONDITION_FEATURES.items():
            out[name] = 1.0 if ctx.conditions.get(condition.value, False) else 0.0
    end = at.astimezone(UTC)
    start = end - timedelta(hours=window_h)
    for key, name in OBSERVATION_FEATURES.items():
        for when, value in reversed(ctx.observations.get(key.value, [])):
            moment = datetime.fromisoformat(when)
            if moment <= end:
                out[name] = value if moment >= start else None
                break
    return out


def feature_vector(
    biomarkers: Mapping[str, float] | None, clinical: Mapping[str, float | None]
) -> dict[str, float | None]:
    """Return every model feature in :data:`FEATURES` order (``None`` where unknown)."""
    merged: dict[str, float | None] = {**(biomarkers or {}), **clinical}
    return {name: _optional_float(merged.get(name)) for name in FEATURES}


def completeness(features: Mapping[str, float | None]) -> CompletenessValues:
    """Summarise which groups of features are present (for clinicians and dashboards)."""
    if any(features.get(name) is None for name in IMAGING_FEATURES):
        return CompletenessValues.NO_IMAGING
    if all(features.get(name) is None for name in CLINICAL_FEATURES):
        return CompletenessValues.NO_CLINICAL_RECORD
    vitals = _group_present(features, ObservationCategory.VITAL_SIGNS)
    labs = _group_present(features, ObservationCategory.LABORATORY)
    if not vitals and not labs:
        return CompletenessValues.NO_VITALS_OR_LABS
    if not labs:
        return CompletenessValues.NO_LABS
    if not vitals:
        return CompletenessValues.NO_VITALS
    if any(features.get(name) is None for name in FEATURES):
        return CompletenessValues.PARTIAL
    return CompletenessValues.COMPLETE


def _require_subject(resource: dict[str, Any]) -> None:
    """Reject a Condition/Observation naming no patient (R4 Observation.subject is optional)."""
    subject = resource.get("subject")
    if not (isinstance(subject, dict) and subject.get("reference")):
        raise FhirRejected(
            FhirRejectionReason.MISSING_SUBJECT,
            "no subject reference",
            resource.get("resourceType"),
            resource.get("id"),
        )


def _group_present(features: Mapping[str, float | None], category: ObservationCategory) -> bool:
    return any(
        features.get(OBSERVATION_FEATURES[key]) is not None
        for key, d in OBSERVATION_DEFINITIONS.items()
        if d.category is category
    )


def _first_key(concept: Any, lookup: Any) -> Any:
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or []:
        key = lookup(str(coding.get("system", "")), str(coding.get("code", "")))
        if key is not None:
            return key
    return None


def _status_code(concept: Any) -> str | None:
    if isinstance(concept, dict):
        for coding in concept.get("coding") or []:
            if coding.get("code"):
                return str(coding["code"])
    return None


def _effective_time(resource: dict[str, Any]) -> str | None:
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
    text = str(raw).replace("Z", "+00:00")
    if len(text) == 4:  # FHIR partial dates: YYYY or YYYY-MM
        text += "-01-01"
    elif len(text) == 7:
        text += "-01"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as e:
        raise FhirRejected(
            FhirRejectionReason.VALIDATION_FAILED,
            f"bad effective time {raw!r}",
            "Observation",
            resource.get("id"),
        ) from e
    if moment.tzinfo is None:  # a bare date (or a date-time without zone): take it as UTC
        moment = moment.replace(tzinfo=UTC)
    # One fixed-width format, so that string order is time order.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _resource_key(resource: dict[str, Any]) -> str:
    if resource.get("id"):
        return str(resource["id"])
    blob = json.dumps(resource, sort_keys=True).encode("utf-8")
    return "sha256-" + hashlib.sha256(blob).hexdigest()[:16]


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
