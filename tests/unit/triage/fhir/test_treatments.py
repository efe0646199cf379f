"""COVID-19 treatments from MedicationRequest / MedicationAdministration (R4 and R5 shapes)."""

from __future__ import annotations

from typing import Any

import pytest

from triage.exceptions import FhirRejected
from triage.fhir import (
    TREATMENT_DEFINITIONS,
    ClinicalContext,
    FhirVersionValues,
    TreatmentClassValues,
    inline_medications,
    maps_to_context,
    treatment_of,
)
from triage.fhir.treatments import ATC, RXNORM

pytestmark = pytest.mark.unit

SUBJECT = {"reference": "Patient/p1"}
START = "2020-11-02T10:00:00Z"


def _rx(code: str) -> dict[str, Any]:
    return {"coding": [{"system": RXNORM, "code": code}]}


def test_value_set_covers_the_treatments_hospitals_used() -> None:
    wanted = {"dexamethasone", "remdesivir", "tocilizumab", "baricitinib", "sarilumab"}
    assert wanted <= set(TREATMENT_DEFINITIONS)
    for definition in TREATMENT_DEFINITIONS.values():
        assert definition.rxnorm and definition.atc  # coded in both systems
        assert definition.matches(ATC, definition.atc[0][0])
    assert {d.treatment_class for d in TREATMENT_DEFINITIONS.values()} == set(TreatmentClassValues)


def test_r4_request_with_codeable_concept_and_dosage_start() -> None:
    request = {
        "resourceType": "MedicationRequest", "id": "r1", "status": "active", "intent": "order",
        "medicationCodeableConcept": _rx("3264"), "subject": SUBJECT,
        "authoredOn": "2020-11-02T08:00:00Z",
        "dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": {"start": START}}}}],
        "note": [{"text": "free text never kept"}],
    }  # fmt: skip
    assert maps_to_context(request)
    context = ClinicalContext().apply(request)
    (given,) = context.treatments_given()
    assert (given.drug, given.treatment_class, given.status) == (
        "dexamethasone", TreatmentClassValues.CORTICOSTEROID, "active",
    )  # fmt: skip
    assert given.started_at == "2020-11-02T10:00:00.000000+00:00"  # the dosage start
    assert "free text" not in str(context.to_dict())
    assert ClinicalContext.from_dict(context.to_dict()).treatments == context.treatments


def test_r4_administration_with_contained_medication_by_atc() -> None:
    administration = {
        "resourceType": "MedicationAdministration", "id": "a1", "status": "completed",
        "contained": [{"resourceType": "Medication", "id": "m",
                       "code": {"coding": [{"system": ATC, "code": "L04AC07"}]}}],
        "medicationReference": {"reference": "#m"}, "subject": SUBJECT,
        "effectivePeriod": {"start": "2020-11-03T09:00:00+01:00"},
    }  # fmt: skip
    treatment = treatment_of(ClinicalContext().apply(administration) and administration)
    assert treatment is not None
    assert treatment.drug == "tocilizumab" and treatment.started_at.startswith("2020-11-03T08")


def test_r5_shapes_medication_concept_and_reference() -> None:
    by_concept = {
        "resourceType": "MedicationAdministration", "id": "a5", "status": "completed",
        "medication": {"concept": _rx("2284718")}, "subject": SUBJECT,
        "occurenceDateTime": "2020-11-03T10:00:00Z",
    }  # fmt: skip
    context = ClinicalContext().apply(by_concept, FhirVersionValues.R5)
    assert [t.drug for t in context.treatments_given()] == ["remdesivir"]
    by_reference = {
        "resourceType": "MedicationRequest", "id": "r5", "status": "completed", "intent": "order",
        "contained": [{"resourceType": "Medication", "id": "m", "code": _rx("2047232")}],
        "medication": {"reference": {"reference": "#m"}}, "subject": SUBJECT,
        "authoredOn": "2020-11-03T10:00:00Z",
    }  # fmt: skip
    context = context.apply(by_reference, FhirVersionValues.R5)
    assert [t.drug for t in context.treatments_given()] == ["baricitinib", "remdesivir"]


def test_bundle_medication_entry_is_inlined_as_contained() -> None:
    bundle = {
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:med-1",
             "resource": {"resourceType": "Medication", "id": "med-1", "code": _rx("1923319")}},
            {"resource": {"resourceType": "MedicationRequest", "id": "r2", "status": "active",
                          "intent": "order", "medicationReference": {"reference": "urn:uuid:med-1"},
                          "subject": SUBJECT, "authoredOn": "2020-11-04"}},
        ],
    }  # fmt: skip
    request = inline_medications(bundle)["entry"][1]["resource"]
    assert request["medicationReference"] == {"reference": "#med-1"}
    assert maps_to_context(request)
    treatment = treatment_of(ClinicalContext().apply(request) and request)
    assert treatment is not None and treatment.drug == "sarilumab"
    assert "contained" not in bundle["entry"][1]["resource"]  # the input is left as it was


def test_unknown_drug_is_ignored_and_cancelled_is_not_given() -> None:
    other = {
        "resourceType": "MedicationRequest", "id": "r3", "status": "active", "intent": "order",
        "medicationCodeableConcept": _rx("161"), "subject": SUBJECT, "authoredOn": "2020-11-04",
    }  # fmt: skip
    assert not maps_to_context(other)
    assert ClinicalContext().apply(other).treatments == {}
    cancelled = {**other, "medicationCodeableConcept": _rx("3264"), "status": "cancelled"}
    context = ClinicalContext().apply(cancelled)
    assert context.treatments and context.treatments_given() == []


def test_known_drug_without_start_is_rejected() -> None:
    request = {
        "resourceType": "MedicationRequest", "id": "r4", "status": "active", "intent": "order",
        "medicationCodeableConcept": _rx("3264"), "subject": SUBJECT,
    }  # fmt: skip
    with pytest.raises(FhirRejected, match="no readable start"):
        ClinicalContext().apply(request)
