"""The per-patient clinical context: FHIR resources folded one at a time into JSON-safe state.

:class:`ClinicalContext` is what the stream keeps per patient in a table
(:meth:`ClinicalContext.apply`, pure); :func:`maps_to_context` says at ingress whether a resource
carries anything it reads. :mod:`triage.fhir.features` turns a context into model features.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

from triage.exceptions import FhirRejected, FhirRejectionReason
from triage.fhir.codes import (
    STATUS_OBSERVATIONS,
    CodeSystem,
    ObservationKey,
    condition_key_for,
    observation_key_for,
)
from triage.fhir.icu import census_candidate
from triage.fhir.parse import FhirVersionValues, normalise_r5
from triage.fhir.parse import validate_resource as _validate
from triage.fhir.readers import (
    condition_key,
    convert_quantity,
    effective_time,
    first_code,
    first_key,
    require_subject,
    resource_key,
    status_code,
    time_of,
)
from triage.fhir.treatments import TREATMENT_RESOURCES, Treatment, drug_of, treatment_of

logger = logging.getLogger(__name__)

_ACTIVE_CLINICAL = {"active", "recurrence", "relapse"}
_PAST_CLINICAL = {"inactive", "remission", "resolved"}
_COUNTED_VERIFICATION = {"confirmed", None}  # absent verificationStatus counts as asserted
_USABLE_OBSERVATION_STATUS = {"final", "amended", "corrected", "preliminary"}
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
    ``treatments`` maps a medication resource's id to its :class:`Treatment` (as a dict): the
    drug, its class, the start time and the status only.
    """

    birth_year: int | None = None
    sex: str | None = None
    conditions: dict[str, bool] = field(default_factory=dict)
    observations: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    condition_records: dict[str, ConditionRecord] = field(default_factory=dict)
    resources_seen: int = 0
    has_patient: bool = False
    treatments: dict[str, dict[str, Any]] = field(default_factory=dict)

    def apply(
        self, resource: dict[str, Any], version: FhirVersionValues = FhirVersionValues.R4
    ) -> ClinicalContext:
        """Return a new context with ``resource`` folded in; raises :class:`FhirRejected`.

        Every resource is validated (``fhir.resources.R4B`` for R4, R5 models for R5). Patient,
        Condition, Observation, MedicationRequest and MedicationAdministration change the
        context; other valid resource types leave it as it is.
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
            require_subject(resource)
            new._apply_condition(resource)
        elif rtype == "Observation":
            require_subject(resource)
            new._apply_observation(resource)
        elif rtype in TREATMENT_RESOURCES:
            require_subject(resource)
            new._apply_treatment(resource)
        return new

    def treatments_given(self) -> list[Treatment]:
        """The patient's treatments that reached them, by start time."""
        known = (Treatment.from_dict(t) for t in self.treatments.values())
        return sorted((t for t in known if t.given), key=lambda t: (t.started_at, t.drug))

    def _apply_treatment(self, resource: dict[str, Any]) -> None:
        treatment = treatment_of(resource)
        if treatment is not None:  # an update of the same resource replaces the earlier one
            self.treatments[treatment.record_id] = treatment.to_dict()

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
            "treatments": {k: dict(v) for k, v in self.treatments.items()},
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
            treatments={str(k): dict(v) for k, v in (data.get("treatments") or {}).items()},
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
        key = first_key(resource.get("code"), condition_key)
        if key is None:
            return
        verification = status_code(resource.get("verificationStatus"))
        self._set_condition(
            resource_key(resource),
            (
                key.value,
                verification in _COUNTED_VERIFICATION,
                status_code(resource.get("clinicalStatus")),
                time_of(resource, "onsetDateTime", "onsetPeriod"),
                time_of(resource, "abatementDateTime", "abatementPeriod"),
            ),
        )

    def _set_condition(self, record_id: str, record: ConditionRecord) -> None:
        self.condition_records[record_id] = record
        now = "9999-12-31T00:00:00.000000+00:00"  # "currently": after every recorded time
        self.conditions = dict(sorted(self.conditions_at(now).items()))

    def _apply_observation(self, resource: dict[str, Any]) -> None:
        status = resource.get("status")
        if first_code(resource.get("code"), CodeSystem.LOINC) in STATUS_OBSERVATIONS:
            self._apply_status_observation(resource, status)
            return
        measured: list[tuple[ObservationKey, Any]] = []
        key = first_key(resource.get("code"), observation_key_for)
        if key is not None:
            measured.append((key, resource.get("valueQuantity")))
        for component in resource.get("component") or []:
            part = first_key(component.get("code"), observation_key_for)
            if part is not None:
                measured.append((part, component.get("valueQuantity")))
        if not measured:
            return
        when = effective_time(resource)
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
        condition = STATUS_OBSERVATIONS[str(first_code(resource.get("code"), CodeSystem.LOINC))]
        when = effective_time(resource)
        record_id = f"status:{condition.value}"
        earlier = self.condition_records.get(record_id)
        if status not in _USABLE_OBSERVATION_STATUS or (
            earlier is not None and when is not None and (earlier[3] or "") > when
        ):
            return  # not usable, or older than the status we hold
        stated = first_key(resource.get("valueCodeableConcept"), condition_key_for)
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
    ``Location/<id>``, which the worker may know as an ICU); an invasive-ventilation Procedure;
    a MedicationRequest / MedicationAdministration of a COVID-19 treatment (treatments.json).
    Everything else is ignored at
    ingress (counted, not published: data minimisation).
    """
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        return True
    if rtype == "Condition":
        return first_key(resource.get("code"), condition_key) is not None
    if rtype == "Observation":
        if first_code(resource.get("code"), CodeSystem.LOINC) in STATUS_OBSERVATIONS:
            return True
        concepts = [resource.get("code")] + [
            c.get("code") for c in resource.get("component") or [] if isinstance(c, dict)
        ]
        return any(first_key(c, observation_key_for) is not None for c in concepts)
    if rtype in TREATMENT_RESOURCES:
        return drug_of(resource) is not None  # a COVID-19 treatment of the value set
    if rtype in {"Encounter", "Procedure"}:
        return census_candidate(resource)  # ICU stays, transfers, invasive ventilation
    return False


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
