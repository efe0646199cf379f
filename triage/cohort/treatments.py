"""Synthetic COVID-19 treatments between a patient's first CT and the follow-up CT.

SYNTHETIC. A share of the patients with a follow-up CT is treated after the first CT: always
dexamethasone, sometimes remdesivir, and for some of the more severe an IL-6 or JAK inhibitor.
The draw is independent of the trajectory: nothing here says that a treatment works (no causal
claim; the data are made up). Each drug is one R4 MedicationRequest (``medicationCodeableConcept``
with its RxNorm and ATC codings) and, for some, a MedicationAdministration naming a contained
Medication (``medicationReference`` ``#med``), the two shapes EHRs send. They go into a Bundle of
their own that arrives before the follow-up CT (``fhir/<patient>-treatments.json``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from triage.cohort.fhir_bundles import Json, _bundle, _concept, _subject, iso, resource_id
from triage.fhir.treatments import ATC, RXNORM, TREATMENT_DEFINITIONS

TREATED_SHARE = 0.6
_STREAM = 103  # the treatment draws of a patient: a random stream of their own


def _medication_concept(drug: str) -> Json:
    definition = TREATMENT_DEFINITIONS[drug]
    (rx_code, rx_display), (atc_code, atc_display) = definition.rxnorm[0], definition.atc[0]
    return _concept(
        {"system": RXNORM, "code": rx_code, "display": rx_display},
        {"system": ATC, "code": atc_code, "display": atc_display},
    )


def _request(rng: np.random.Generator, drug: str, patient_id: str, start: datetime) -> Json:
    return {
        "resourceType": "MedicationRequest",
        "id": resource_id(rng),
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": _medication_concept(drug),
        "subject": _subject(patient_id),
        "authoredOn": iso(start - timedelta(minutes=30)),
        "dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": {"start": iso(start)}}}}],
    }


def _administration(rng: np.random.Generator, drug: str, patient_id: str, at: datetime) -> Json:
    return {
        "resourceType": "MedicationAdministration",
        "id": resource_id(rng),
        "contained": [
            {"resourceType": "Medication", "id": "med", "code": _medication_concept(drug)}
        ],
        "status": "completed",
        "medicationReference": {"reference": "#med"},
        "subject": _subject(patient_id),
        "effectiveDateTime": iso(at),
    }


def plan_drugs(rng: np.random.Generator, severity: float) -> list[str]:
    """The drugs of a treated patient (dexamethasone always)."""
    drugs = ["dexamethasone"]
    if rng.random() < 0.5:
        drugs.append("remdesivir")
    if severity > 0.5 and rng.random() < 0.5:
        drugs.append("tocilizumab" if rng.random() < 0.6 else "baricitinib")
    return drugs


def treatment_bundle(
    seed: int,
    index: int,
    patient_id: str,
    severity: float,
    first_ct: datetime,
    follow_up_ct: datetime,
) -> Json | None:
    """The treatments a patient got between two CTs as a Bundle (None: untreated)."""
    rng = np.random.default_rng([seed, index, _STREAM])
    if rng.random() >= TREATED_SHARE:
        return None
    gap_h = (follow_up_ct - first_ct).total_seconds() / 3600.0
    resources = []
    for drug in plan_drugs(rng, severity):
        start = first_ct + timedelta(hours=float(rng.uniform(1.0, max(gap_h / 2.0, 1.5))))
        resources.append(_request(rng, drug, patient_id, start))
        if rng.random() < 0.5:
            resources.append(_administration(rng, drug, patient_id, start + timedelta(hours=1)))
    assembled = follow_up_ct - timedelta(hours=2)
    return _bundle(rng, resources, assembled)
