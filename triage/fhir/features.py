"""FHIR R4 clinical record -> model features (codes with systems, UCUM units, never free text).

:class:`ClinicalContext` is the per-patient state the stream keeps in a table: it folds FHIR
resources one at a time (:meth:`ClinicalContext.apply`, pure) and serialises to JSON.
:func:`clinical_features` reads it at the CT time; :func:`feature_vector` puts imaging biomarkers
and clinical features in the model's order. A missing value stays ``None``: nothing is imputed
(XGBoost learns a direction for missing values).

Value sets, UCUM conversions and plausible ranges are data (``triage/valuesets/``, loaded by
:mod:`triage.codes`). Observations whose ``in_model`` is false there (blood pressure, BMI,
supplemental oxygen, ferritin, creatinine, ...) are extracted into :data:`CONTEXT_FEATURES` but
are not part of the model vector :data:`FEATURES` until a model is trained on data that has them.
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

from triage.exceptions import FhirRejected, FhirRejectionReason
from triage.fhir.codes import (
    OBSERVATION_DEFINITIONS,
    STATUS_OBSERVATIONS,
    CodeSystem,
    ConditionKey,
    ObservationCategory,
    ObservationKey,
    condition_key_for,
    observation_key_for,
)
from triage.fhir.diagnoses import DiagnosisKey, diagnosis_key_for
from triage.fhir.icu import census_candidate
from triage.fhir.parse import FhirVersionValues, normalise_r5
from triage.fhir.parse import validate_resource as _validate

logger = logging.getLogger(__name__)

IMAGING_FEATURES: tuple[str, ...] = (
    "lung_volume_ml",
    "lesion_volume_ml",
    "lesion_percent",
    "ggo_percent",
    "consolidation_percent",
    "well_aerated_percent",
)
# Feature name of each observation the model scores: key + canonical UCUM unit as a suffix.
OBSERVATION_FEATURES: dict[ObservationKey, str] = {
    key: d.feature for key, d in OBSERVATION_DEFINITIONS.items() if d.in_model
}
# Observations kept in the context and shown, not (yet) scored.
CONTEXT_OBSERVATION_FEATURES: dict[ObservationKey, str] = {
    key: d.feature for key, d in OBSERVATION_DEFINITIONS.items() if not d.in_model
}
CONDITION_FEATURES: dict[ConditionKey, str] = {key: f"has_{key.value}" for key in ConditionKey}
DEMOGRAPHIC_FEATURES: tuple[str, ...] = ("age_years", "sex_male")
# Diagnoses of the current illness the risk model was trained with (the Mexico case file's
# NEUMONIA flag), read from Conditions coded in triage/valuesets/diagnoses.json. Unlike a
# comorbidity, no such Condition in the record is not a "no": the diagnosis comes with the CT,
# often after it. So 1 when one is present at the CT time, else missing (never 0).
DIAGNOSIS_CONDITION_FEATURES: dict[DiagnosisKey, str] = {
    key: f"has_{key.value}" for key in DiagnosisKey
}
DIAGNOSIS_FEATURES: tuple[str, ...] = tuple(DIAGNOSIS_CONDITION_FEATURES.values())
CLINICAL_FEATURES: tuple[str, ...] = (
    *DEMOGRAPHIC_FEATURES,
    *CONDITION_FEATURES.values(),
    *DIAGNOSIS_FEATURES,
    *OBSERVATION_FEATURES.values(),
)
FEATURES: tuple[str, ...] = (*IMAGING_FEATURES, *CLINICAL_FEATURES)
"""The model vector, in the order of the risk model's card."""
CONTEXT_FEATURES: tuple[str, ...] = (*CLINICAL_FEATURES, *CONTEXT_OBSERVATION_FEATURES.values())
"""Every clinical feature extracted (the model's and the context-only ones)."""

FEATURE_UNITS: dict[str, str] = {
    "lung_volume_ml": "mL",
    "lesion_volume_ml": "mL",
    **{name: "%" for name in IMAGING_FEATURES if name.endswith("_percent")},
    "age_years": "a",
    "sex_male": "1 (0 = female, 1 = male)",
    **{name: "1 (0 = absent, 1 = present)" for name in CONDITION_FEATURES.values()},
    **{name: "1 (0 = absent, 1 = present)" for name in DIAGNOSIS_FEATURES},
    **{d.feature: d.unit for d in OBSERVATION_DEFINITIONS.values()},
}

# Accepted UCUM units per observation -> (scale, offset) to the canonical unit (from the data).
UNIT_CONVERSIONS: dict[ObservationKey, dict[str, tuple[float, float]]] = {
    key: dict(d.conversions) for key, d in OBSERVATION_DEFINITIONS.items()
}

_ACTIVE_CLINICAL = {"active", "recurrence", "relapse"}
_PAST_CLINICAL = {"inactive", "remission", "resolved"}
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


ConditionRecord = tuple[str, bool, str | None, str | None, str | None]
"""One Condition as kept: (key, verified, clinical status, onset, abatement), times ISO UTC."""


@dataclass
class ClinicalContext:
    """What we know of one patient's record: JSON-safe, folded one FHIR resource at a time.

    ``condition_records`` maps a Condition's resource id to a :data:`ConditionRecord`, so that an
    update of one Condition (e.g. to ``resolved``) replaces its earlier version; ``conditions``
    (comorbidity or diagnosis -> active now) is derived from it. ``observations`` maps an
    :class:`ObservationKey` value to ``[iso_time_utc, value]`` pairs in canonical units, sorted
    by time. ``has_patient`` says whether the Patient resource itself has been seen.
    """

    birth_year: int | None = None
    sex: str | None = None
    conditions: dict[str, bool] = field(default_factory=dict)
    observations: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    condition_records: dict[str, ConditionRecord] = field(default_factory=dict)
    resources_seen: int = 0
    has_patient: bool = False

    def apply(
        self, resource: dict[str, Any], version: FhirVersionValues = FhirVersionValues.R4
    ) -> ClinicalContext:
        """Return a new context with ``resource`` folded in; raises :class:`FhirRejected`.

        Every resource is validated (``fhir.resources.R4B`` for R4, R5 models for R5). Patient,
        Condition and Observation change the context; other valid resource types leave it as
        it is.
        """
        _validate(resource, version)
        if version is FhirVersionValues.R5:
            resource = normalise_r5(resource)
        return self.fold(resource)

    def fold(self, resource: dict[str, Any]) -> ClinicalContext:
        """Like :meth:`apply` for a resource already validated (and in R4 shape)."""
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
            "condition_records": {k: list(rec) for k, rec in self.condition_records.items()},
            "resources_seen": self.resources_seen,
            "has_patient": self.has_patient,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClinicalContext:
        """Rebuild a context from :meth:`to_dict` output (older two-field records too)."""
        return cls(
            birth_year=data.get("birth_year"),
            sex=data.get("sex"),
            conditions={str(k): bool(v) for k, v in (data.get("conditions") or {}).items()},
            observations={
                str(k): [(str(t), float(v)) for t, v in pts]
                for k, pts in (data.get("observations") or {}).items()
            },
            condition_records={
                str(k): _condition_record(rec)
                for k, rec in (data.get("condition_records") or {}).items()
            },
            resources_seen=int(data.get("resources_seen", 0)),
            has_patient=bool(data.get("has_patient", data.get("birth_year") is not None)),
        )

    def conditions_at(self, at_iso: str) -> dict[str, bool]:
        """Comorbidity (or diagnosis) -> whether some record of it was active at ``at_iso``."""
        active: dict[str, bool] = {}
        for record in self.condition_records.values():
            active[record[0]] = active.get(record[0], False) or _active_at(record, at_iso)
        return active

    def _apply_patient(self, resource: dict[str, Any]) -> None:
        birth = resource.get("birthDate")
        self.birth_year = int(str(birth)[:4]) if birth else None
        self.sex = resource.get("gender")
        self.has_patient = True

    def _apply_condition(self, resource: dict[str, Any]) -> None:
        key = _first_key(resource.get("code"), _condition_key)
        if key is None:
            return
        verification = _status_code(resource.get("verificationStatus"))
        self._set_condition(
            _resource_key(resource),
            (
                key.value,
                verification in _COUNTED_VERIFICATION,
                _status_code(resource.get("clinicalStatus")),
                _time_of(resource, "onsetDateTime", "onsetPeriod"),
                _time_of(resource, "abatementDateTime", "abatementPeriod"),
            ),
        )

    def _set_condition(self, record_id: str, record: ConditionRecord) -> None:
        self.condition_records[record_id] = record
        now = "9999-12-31T00:00:00.000000+00:00"  # "currently": after every recorded time
        self.conditions = dict(sorted(self.conditions_at(now).items()))

    def _apply_observation(self, resource: dict[str, Any]) -> None:
        status = resource.get("status")
        if _first_code(resource.get("code"), CodeSystem.LOINC) in STATUS_OBSERVATIONS:
            self._apply_status_observation(resource, status)
            return
        measured: list[tuple[ObservationKey, Any]] = []
        key = _first_key(resource.get("code"), observation_key_for)
        if key is not None:
            measured.append((key, resource.get("valueQuantity")))
        for component in resource.get("component") or []:
            part = _first_key(component.get("code"), observation_key_for)
            if part is not None:
                measured.append((part, component.get("valueQuantity")))
        if not measured:
            return
        when = _effective_time(resource)
        if status == "entered-in-error":
            for part, quantity in measured:
                self._retract(part, quantity, when, resource)
            return
        measured = [(part, q) for part, q in measured if q is not None]
        if status not in _USABLE_OBSERVATION_STATUS or not measured:
            return  # registered / cancelled / no numeric value (e.g. dataAbsentReason)
        if when is None:
            raise FhirRejected(
                FhirRejectionReason.VALIDATION_FAILED,
                "Observation has no effective time",
                "Observation",
                resource.get("id"),
            )
        values = [(part, convert_quantity(part, q, resource)) for part, q in measured]
        for part, value in values:  # all converted first: one bad component rejects the whole
            points = set(self.observations.get(part.value, []))
            points.add((when, value))
            self.observations[part.value] = sorted(points)

    def _apply_status_observation(self, resource: dict[str, Any], status: Any) -> None:
        """An Observation whose coded value states a condition (e.g. tobacco smoking status)."""
        condition = STATUS_OBSERVATIONS[str(_first_code(resource.get("code"), CodeSystem.LOINC))]
        when = _effective_time(resource)
        record_id = f"status:{condition.value}"
        earlier = self.condition_records.get(record_id)
        if status not in _USABLE_OBSERVATION_STATUS or (
            earlier is not None and when is not None and (earlier[3] or "") > when
        ):
            return  # not usable, or older than the status we hold
        stated = _first_key(resource.get("valueCodeableConcept"), condition_key_for)
        clinical = "active" if stated is condition else "inactive"
        self._set_condition(record_id, (condition.value, True, clinical, when, None))

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


def maps_to_context(resource: dict[str, Any]) -> bool:
    """Whether a resource carries anything the clinical context or the ICU census reads.

    Patient always; a Condition coded in a comorbidity or diagnosis value set (pneumonia); an
    Observation (or one of
    its components) with a known LOINC code; an ICU Encounter (or an inpatient one at a
    ``Location/<id>``, which the worker may know as an ICU); an invasive-ventilation Procedure.
    Everything else is ignored at
    ingress (counted, not published: data minimisation).
    """
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        return True
    if rtype == "Condition":
        return _first_key(resource.get("code"), _condition_key) is not None
    if rtype == "Observation":
        if _first_code(resource.get("code"), CodeSystem.LOINC) in STATUS_OBSERVATIONS:
            return True
        concepts = [resource.get("code")] + [
            c.get("code") for c in resource.get("component") or [] if isinstance(c, dict)
        ]
        return any(_first_key(c, observation_key_for) is not None for c in concepts)
    if rtype in {"Encounter", "Procedure"}:
        return census_candidate(resource)  # ICU stays, transfers, invasive ventilation
    return False


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


def clinical_features(
    ctx: ClinicalContext, at: datetime, window_h: float = 72
) -> dict[str, float | None]:
    """Return every clinical feature (:data:`CONTEXT_FEATURES`) at time ``at`` (tz-aware).

    Age from the birth year (the only part of the birth date that passes ingress), sex as 0/1,
    comorbidity flags as of ``at`` (onset, abatement and statuses honoured; 0 when the record
    has no such condition, ``None`` when there is no record at all), diagnosis flags
    (``has_pneumonia``) honoured the same way but 1 or ``None`` (a diagnosis not yet made is
    unknown, not absent), and for each observation
    the value nearest before ``at`` (at or before it, no earlier than ``window_h`` hours).
    """
    if at.tzinfo is None:
        raise ValueError("clinical_features needs a timezone-aware time")
    out: dict[str, float | None] = dict.fromkeys(CONTEXT_FEATURES)
    out["age_years"] = float(at.year - ctx.birth_year) if ctx.birth_year is not None else None
    out["sex_male"] = _SEX.get(ctx.sex or "")
    end = at.astimezone(UTC)
    at_iso = end.isoformat(timespec="microseconds")
    if ctx.resources_seen > 0:
        active = ctx.conditions_at(at_iso)
        for condition, name in CONDITION_FEATURES.items():
            out[name] = 1.0 if active.get(condition.value, False) else 0.0
        for diagnosis, name in DIAGNOSIS_CONDITION_FEATURES.items():
            out[name] = 1.0 if active.get(diagnosis.value, False) else None
    start = end - timedelta(hours=window_h)
    for key, definition in OBSERVATION_DEFINITIONS.items():
        for when, value in reversed(ctx.observations.get(key.value, [])):
            moment = datetime.fromisoformat(when)
            if moment <= end:
                out[definition.feature] = value if moment >= start else None
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
    # Diagnoses (has_pneumonia) do not count: they come with the CT, often after it, so a
    # record without one yet is as complete as the EHR can be at scoring time.
    if any(features.get(name) is None for name in FEATURES if name not in DIAGNOSIS_FEATURES):
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


def _condition_key(system: str, code: str) -> ConditionKey | DiagnosisKey | None:
    """The comorbidity or diagnosis a Condition coding means (the two value sets are disjoint)."""
    return condition_key_for(system, code) or diagnosis_key_for(system, code)


def _group_present(features: Mapping[str, float | None], category: ObservationCategory) -> bool:
    return any(
        features.get(name) is not None
        for key, name in OBSERVATION_FEATURES.items()
        if OBSERVATION_DEFINITIONS[key].category is category
    )


def _first_key(concept: Any, lookup: Any) -> Any:
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or []:
        key = lookup(str(coding.get("system", "")), str(coding.get("code", "")))
        if key is not None:
            return key
    return None


def _first_code(concept: Any, system: str) -> str | None:
    if isinstance(concept, dict):
        for coding in concept.get("coding") or []:
            if coding.get("system") == system and coding.get("code"):
                return str(coding["code"])
    return None


def _condition_record(raw: Any) -> ConditionRecord:
    """A stored record; the two-field form ``[key, counts]`` of older contexts is upgraded."""
    if len(raw) == 2:
        key, counts = raw
        return (str(key), bool(counts), "active" if counts else "inactive", None, None)
    key, verified, clinical, onset, abatement = raw
    return (str(key), bool(verified), clinical, onset, abatement)


def _active_at(record: ConditionRecord, at_iso: str) -> bool:
    """Whether a Condition record describes a comorbidity present at ``at_iso``."""
    _, verified, clinical, onset, abatement = record
    if not verified or (onset is not None and onset > at_iso):
        return False
    if clinical is None or clinical in _ACTIVE_CLINICAL:
        return abatement is None or abatement > at_iso
    if clinical in _PAST_CLINICAL:
        return abatement is not None and abatement > at_iso  # resolved only after ``at``
    return False


def _time_of(resource: dict[str, Any], datetime_field: str, period_field: str) -> str | None:
    """A dateTime (or a Period's start) as fixed-width ISO UTC; None if absent or unreadable."""
    period = resource.get(period_field) or {}
    raw = resource.get(datetime_field) or (
        period.get("start") if isinstance(period, dict) else None
    )
    try:
        return _iso_utc(raw) if raw else None
    except ValueError:
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
    try:
        return _iso_utc(raw)
    except ValueError as e:
        raise FhirRejected(
            FhirRejectionReason.VALIDATION_FAILED,
            f"bad effective time {str(raw)[:40]!r}",
            "Observation",
            resource.get("id"),
        ) from e


def _iso_utc(raw: Any) -> str:
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


def _resource_key(resource: dict[str, Any]) -> str:
    if resource.get("id"):
        return str(resource["id"])
    blob = json.dumps(resource, sort_keys=True).encode("utf-8")
    return "sha256-" + hashlib.sha256(blob).hexdigest()[:16]


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
