"""FHIR R4 Bundles of the synthetic cohort: one per patient, plus the ICU census.

Resources are plain JSON dicts (what an EHR would send); the tests validate them with
``fhir.resources.R4B``. Every concept is coded with the value sets of :mod:`triage.codes`.
Resource ids other than ``Patient.id`` are random hex (never derived from the raw patient id),
so that pseudonymising ``Patient.id`` and ``Patient/<id>`` references is enough to unlink them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from triage.cohort.identity import Identity
from triage.cohort.patients import ClinicalProfile, Measurement
from triage.fhir.codes import (
    CONDITION_VALUE_SETS,
    ENCOUNTER_CLASS_INPATIENT,
    ICU_ENCOUNTER_TYPE,
    ICU_LOCATION_DISPLAY,
    ICU_LOCATION_TYPE,
    OBSERVATION_DEFINITIONS,
    CodeSystem,
    ConditionKey,
    ObservationCategory,
)
from triage.fhir.diagnoses import DIAGNOSIS_VALUE_SETS, DiagnosisKey
from triage.fhir.icu import INVASIVE_VENTILATION

Json = dict[str, Any]


def iso(when: datetime) -> str:
    """Format as FHIR dateTime/instant text an aware datetime (seconds precision, UTC)."""
    return when.astimezone(UTC).replace(microsecond=0).isoformat()


def resource_id(rng: np.random.Generator) -> str:
    """Return a random 32-hex-digit resource id."""
    return "".join(f"{int(b):02x}" for b in rng.integers(0, 256, size=16))


def _concept(*codings: Json) -> Json:
    return {"coding": list(codings)}


def _subject(patient_id: str) -> Json:
    return {"reference": f"Patient/{patient_id}"}


def mrn_system(hospital: str) -> str:
    """Return the identifier system of the hospital's medical record numbers."""
    slug = "".join(ch if ch.isalnum() else "-" for ch in hospital.lower()).strip("-") or "hospital"
    return f"urn:ctriage:{slug}:mrn"


def patient_resource(identity: Identity, sex: str, hospital: str) -> Json:
    """Build a Patient with the identifying fields ingress must remove (name, address, MRN, ...)."""
    return {
        "resourceType": "Patient",
        "id": identity.patient_id,
        "identifier": [
            {
                "use": "usual",
                "type": _concept(
                    {
                        "system": CodeSystem.IDENTIFIER_TYPE.value,
                        "code": "MR",
                        "display": "Medical record number",
                    }
                ),
                "system": mrn_system(hospital),
                "value": identity.mrn,
            }
        ],
        "active": True,
        "name": [
            {"use": "official", "family": identity.family_name, "given": [identity.given_name]}
        ],
        "telecom": [{"system": "phone", "value": identity.phone, "use": "home"}],
        "gender": sex,
        "birthDate": identity.birth_date.isoformat(),
        "address": [
            {
                "use": "home",
                "line": [identity.street],
                "city": identity.city,
                "postalCode": identity.postal_code,
                "country": "XX",
            }
        ],
    }


def _statuses() -> Json:
    """Clinical status active, verification status confirmed (every generated Condition)."""
    return {
        "clinicalStatus": _concept(
            {"system": CodeSystem.CONDITION_CLINICAL.value, "code": "active", "display": "Active"}
        ),
        "verificationStatus": _concept(
            {
                "system": CodeSystem.CONDITION_VER_STATUS.value,
                "code": "confirmed",
                "display": "Confirmed",
            }
        ),
    }


def pneumonia_resource(
    rng: np.random.Generator, patient_id: str, ct_time: datetime, recorded: datetime
) -> Json:
    """Build the active, confirmed encounter diagnosis of viral pneumonia (SNOMED CT + ICD-10).

    Onset is the symptom onset, 2-10 days before the CT; recorded at admission (``recorded``).
    """
    snomed, icd10 = DIAGNOSIS_VALUE_SETS[DiagnosisKey.PNEUMONIA].primary_codings
    onset = ct_time - timedelta(hours=float(np.rint(rng.uniform(48.0, 240.0))))
    return {
        "resourceType": "Condition",
        "id": resource_id(rng),
        **_statuses(),
        "category": [
            _concept(
                {
                    "system": CodeSystem.CONDITION_CATEGORY.value,
                    "code": "encounter-diagnosis",
                    "display": "Encounter Diagnosis",
                }
            )
        ],
        "code": _concept(snomed.as_fhir(), icd10.as_fhir()),
        "subject": _subject(patient_id),
        "onsetDateTime": iso(min(onset, recorded)),
        "recordedDate": iso(recorded),
    }


def condition_resource(
    rng: np.random.Generator, key: ConditionKey, patient_id: str, recorded: datetime
) -> Json:
    """Build an active, confirmed Condition coded with SNOMED CT and ICD-10."""
    snomed, icd10 = CONDITION_VALUE_SETS[key].primary_codings
    onset = recorded - timedelta(days=int(rng.integers(180, 365 * 15)))
    return {
        "resourceType": "Condition",
        "id": resource_id(rng),
        **_statuses(),
        "category": [
            _concept(
                {
                    "system": CodeSystem.CONDITION_CATEGORY.value,
                    "code": "problem-list-item",
                    "display": "Problem List Item",
                }
            )
        ],
        "code": _concept(snomed.as_fhir(), icd10.as_fhir()),
        "subject": _subject(patient_id),
        "onsetDateTime": onset.date().isoformat(),
        "recordedDate": iso(recorded),
    }


def observation_resource(
    rng: np.random.Generator,
    m: Measurement,
    patient_id: str,
    ct_time: datetime,
    known_by: datetime,
) -> Json:
    """Build a final Observation with LOINC code(s) and a UCUM valueQuantity, dated before the CT.

    Laboratory results get an ``issued`` time 30-120 min after the sample, never later than
    ``known_by`` (when the bundle leaves the EHR).
    """
    definition = OBSERVATION_DEFINITIONS[m.key]
    effective = ct_time - timedelta(hours=m.hours_before_ct)
    unit = definition.unit_coding
    resource: Json = {
        "resourceType": "Observation",
        "id": resource_id(rng),
        "status": "final",
        "category": [_concept(definition.category.coding.as_fhir())],
        "code": _concept(*(c.as_fhir() for c in definition.loinc)),
        "subject": _subject(patient_id),
        "effectiveDateTime": iso(effective),
        "valueQuantity": {
            "value": int(m.value) if float(m.value).is_integer() else m.value,
            "unit": unit.code,
            "system": unit.system.value,
            "code": unit.code,
        },
    }
    if definition.category is ObservationCategory.LABORATORY:
        issued = effective + timedelta(minutes=int(rng.integers(30, 120)))
        resource["issued"] = iso(max(effective, min(issued, known_by)))
    return resource


def patient_bundle(
    rng: np.random.Generator,
    identity: Identity,
    profile: ClinicalProfile,
    hospital: str,
    ct_time: datetime,
    assembled_at: datetime,
) -> Json:
    """Build a collection Bundle: Patient, Conditions and Observations before ``ct_time``.

    A pneumonia-grade patient (:attr:`ClinicalProfile.pneumonia`) also gets the pneumonia
    diagnosis, recorded at admission with the comorbidities.
    """
    pid = identity.patient_id
    recorded = ct_time - timedelta(hours=float(rng.uniform(8, 72)))
    resources = [patient_resource(identity, profile.sex, hospital)]
    resources += [condition_resource(rng, key, pid, recorded) for key in profile.conditions]
    if profile.pneumonia:
        resources.append(pneumonia_resource(rng, pid, ct_time, recorded))
    resources += [
        observation_resource(rng, m, pid, ct_time, assembled_at) for m in profile.measurements
    ]
    return _bundle(rng, resources, assembled_at)


def _icu_location() -> Json:
    return {
        "resourceType": "Location",
        "id": "icu",
        "status": "active",
        "name": ICU_LOCATION_DISPLAY,
        "mode": "instance",
        "type": [_concept(ICU_LOCATION_TYPE.as_fhir())],
    }


def icu_encounter(rng: np.random.Generator, patient_id: str, admitted_at: datetime) -> Json:
    """Build an in-progress ICU stay (class IMP, contained Location typed v3 RoleCode ICU)."""
    return {
        "resourceType": "Encounter",
        "id": resource_id(rng),
        "contained": [_icu_location()],
        "status": "in-progress",
        "class": ENCOUNTER_CLASS_INPATIENT.as_fhir(),
        "type": [_concept(ICU_ENCOUNTER_TYPE.as_fhir())],
        "subject": _subject(patient_id),
        "period": {"start": iso(admitted_at)},
        "location": [
            {
                "location": {"reference": "#icu", "display": ICU_LOCATION_DISPLAY},
                "status": "active",
                "period": {"start": iso(admitted_at)},
            }
        ],
    }


def ventilation_procedure(
    rng: np.random.Generator, patient_id: str, encounter: Json, started_at: datetime
) -> Json:
    """Build invasive mechanical ventilation in progress since ``started_at`` (SNOMED CT).

    Part of the ICU ``encounter`` and at its location: the same ICU Location (contained here
    too, since a contained resource belongs to one resource) with the same display, so that
    :func:`triage.icu.ventilation_change` reads a ventilation start in the same unit as the
    ICU admission.
    """
    return {
        "resourceType": "Procedure",
        "id": resource_id(rng),
        "contained": [_icu_location()],
        "status": "in-progress",
        "code": _concept(INVASIVE_VENTILATION.as_fhir()),
        "subject": _subject(patient_id),
        "encounter": {"reference": f"Encounter/{encounter['id']}"},
        "performedPeriod": {"start": iso(started_at)},
        "location": {"reference": "#icu", "display": ICU_LOCATION_DISPLAY},
    }


@dataclass(frozen=True)
class IcuOccupant:
    """A patient already in the ICU when the cohort starts; ventilated since ``ventilated_at``."""

    identity: Identity
    sex: str
    admitted_at: datetime
    ventilated_at: datetime | None = None


def census_bundle(
    rng: np.random.Generator,
    occupants: list[IcuOccupant],
    hospital: str,
    assembled_at: datetime,
) -> Json:
    """Build the ICU census Bundle: Patient + in-progress ICU Encounter per occupant.

    A ventilated occupant also gets an in-progress invasive ventilation Procedure.
    """
    resources: list[Json] = []
    for occupant in occupants:
        pid = occupant.identity.patient_id
        resources.append(patient_resource(occupant.identity, occupant.sex, hospital))
        encounter = icu_encounter(rng, pid, occupant.admitted_at)
        resources.append(encounter)
        if occupant.ventilated_at is not None:
            resources.append(ventilation_procedure(rng, pid, encounter, occupant.ventilated_at))
    return _bundle(rng, resources, assembled_at)


def _bundle(rng: np.random.Generator, resources: list[Json], assembled_at: datetime) -> Json:
    return {
        "resourceType": "Bundle",
        "id": resource_id(rng),
        "type": "collection",
        "timestamp": iso(assembled_at),
        "entry": [{"resource": r} for r in resources],
    }
