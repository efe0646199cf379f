"""Pseudonymisation: deterministic, key-dependent, and no direct identifier survives."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from triage.exceptions import FhirRejected, FhirRejectionReason
from triage.fhir.pseudonym import patient_key, pseudonymise_id, pseudonymise_resource

pytestmark = pytest.mark.unit

KEY = b"test-key-1"
RAW_ID = "CANARY-PATIENT-ID-7731"
CANARIES = (
    RAW_ID,
    "CanaryFamily",
    "CanaryGiven",
    "CANARY-MRN-0042",
    "CanaryStreet 9",
    "555-CANARY",
    "CanaryMother",
    "CanaryCity",
    "04-17",  # month-day of the birth date
    "Canary Display Name",
)


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": RAW_ID,
        "meta": {"source": f"urn:ehr:{RAW_ID}"},
        "text": {"status": "generated", "div": "<div>CanaryGiven CanaryFamily</div>"},
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
                "valueString": "CanaryMother",
            },
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                "valueAddress": {"city": "CanaryCity"},
            },
        ],
        "identifier": [{"system": "urn:mrn", "value": "CANARY-MRN-0042"}],
        "name": [{"family": "CanaryFamily", "given": ["CanaryGiven"]}],
        "telecom": [{"system": "phone", "value": "555-CANARY"}],
        "address": [{"line": ["CanaryStreet 9"], "city": "CanaryCity"}],
        "contact": [{"name": {"family": "CanaryFamily"}}],
        "gender": "female",
        "birthDate": "1957-04-17",
    }


def observation(subject_ref: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "obs-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "59408-5"}]},
        "subject": {
            "reference": subject_ref,
            "display": "Canary Display Name",
            "identifier": {"system": "urn:mrn", "value": "CANARY-MRN-0042"},
        },
        "effectiveDateTime": "2024-03-01T10:00:00+00:00",
        "valueQuantity": {
            "value": 95,
            "unit": "%",
            "system": "http://unitsofmeasure.org",
            "code": "%",
        },
    }


def bundle() -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{RAW_ID}",
                "resource": patient(),
                "request": {
                    "method": "PUT",
                    "url": f"Patient/{RAW_ID}",
                    "ifNoneExist": "identifier=urn:mrn|CANARY-MRN-0042",
                },
            },
            {
                "fullUrl": "urn:uuid:obs-1",
                "resource": observation(f"urn:uuid:{RAW_ID}"),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": {
                    "resourceType": "Claim",
                    "id": "claim-1",
                    "status": "active",
                    "type": {"coding": [{"code": "institutional"}]},
                    "use": "claim",
                    "patient": {"reference": f"Patient/{RAW_ID}", "display": "Canary Display Name"},
                    "created": "2024-03-01",
                    "provider": {"reference": "Organization/org-1"},
                    "priority": {"coding": [{"code": "normal"}]},
                    "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "x"}}],
                },
            },
        ],
    }


def assert_no_canary(resource: dict[str, Any]) -> None:
    text = json.dumps(resource)
    for canary in CANARIES:
        assert canary not in text, f"{canary!r} leaked: {text}"


def test_pseudonym_is_deterministic_and_key_dependent() -> None:
    first = pseudonymise_id(RAW_ID, KEY, "k1")
    assert first == pseudonymise_id(RAW_ID, KEY, "k1")
    assert re.fullmatch(r"k1-[0-9a-f]{20}", first)
    assert first != pseudonymise_id(RAW_ID, b"another-key", "k1")
    assert first != pseudonymise_id(RAW_ID + "x", KEY, "k1")
    assert pseudonymise_id(RAW_ID, KEY, "k2").startswith("k2-")


def test_patient_loses_identifiers_and_keeps_birth_year() -> None:
    original = patient()
    out = pseudonymise_resource(original, KEY, "k1")
    assert original == patient(), "input must not be mutated"
    assert_no_canary(out)
    assert out["id"] == pseudonymise_id(RAW_ID, KEY, "k1")
    assert out["birthDate"] == "1957"
    assert out["gender"] == "female"
    for field in ("name", "address", "telecom", "identifier", "photo", "contact", "text"):
        assert field not in out


def test_subject_reference_rewritten_without_display_or_identifier() -> None:
    out = pseudonymise_resource(observation(f"Patient/{RAW_ID}"), KEY, "k1")
    assert_no_canary(out)
    pseudonym = pseudonymise_id(RAW_ID, KEY, "k1")
    assert out["subject"] == {"reference": f"Patient/{pseudonym}"}
    assert patient_key(out) == pseudonym


def test_absolute_and_versioned_references() -> None:
    ref = f"https://ehr.example.org/fhir/Patient/{RAW_ID}/_history/3"
    out = pseudonymise_resource(observation(ref), KEY, "k1")
    assert out["subject"]["reference"] == f"Patient/{pseudonymise_id(RAW_ID, KEY, 'k1')}"


def test_bundle_entries_and_urn_references() -> None:
    out = pseudonymise_resource(bundle(), KEY, "k1")
    assert_no_canary(out)
    pseudonym = pseudonymise_id(RAW_ID, KEY, "k1")
    pat, obs, claim = (e["resource"] for e in out["entry"])
    assert pat["id"] == pseudonym
    assert obs["subject"]["reference"] == f"Patient/{pseudonym}"
    assert claim["patient"] == {"reference": f"Patient/{pseudonym}"}
    assert out["entry"][0]["request"]["url"] == f"Patient/{pseudonym}"
    # Still valid FHIR R4 after the rewrite.
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(out)


def test_nested_bundle_is_processed() -> None:
    outer = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": bundle()}]}
    out = pseudonymise_resource(outer, KEY, "k1")
    assert_no_canary(out)


def test_synthea_bundle_has_no_name_or_id_left(shared_data: Path) -> None:
    files = sorted((shared_data / "fhir/synthea-covid/bundles").glob("*.json"))
    assert files, "the Synthea sample is listed in the data README"
    raw = json.loads(files[0].read_text())
    pat = next(e["resource"] for e in raw["entry"] if e["resource"]["resourceType"] == "Patient")
    out = json.dumps(pseudonymise_resource(copy.deepcopy(raw), KEY, "k1"))
    assert pat["id"] not in out
    assert pat["name"][0]["family"] not in out
    assert pat["birthDate"] not in out


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([1, 2], FhirRejectionReason.NOT_A_RESOURCE),
        ({"id": "x"}, FhirRejectionReason.NOT_A_RESOURCE),
        ({"resourceType": "NotAThing", "id": "x"}, FhirRejectionReason.UNKNOWN_RESOURCE_TYPE),
        ({"resourceType": "Patient"}, FhirRejectionReason.MISSING_SUBJECT),
        (
            {
                "resourceType": "Observation",
                "subject": {"identifier": {"value": "CANARY-MRN-0042"}},
            },
            FhirRejectionReason.MISSING_SUBJECT,
        ),
    ],
)
def test_rejections_have_reason_codes(payload: Any, reason: FhirRejectionReason) -> None:
    with pytest.raises(FhirRejected) as info:
        pseudonymise_resource(payload, KEY, "k1")
    assert info.value.reason is reason


def test_patient_key_needs_a_subject() -> None:
    with pytest.raises(FhirRejected) as info:
        patient_key({"resourceType": "Observation", "id": "o"})
    assert info.value.reason is FhirRejectionReason.MISSING_SUBJECT


@pytest.mark.parametrize("odd", [True, 3, "x", {"resource": {}}, None])
def test_non_array_entry_or_contained_is_no_items(odd: Any) -> None:
    """Found by the property test: ``"entry": true`` once crashed the pseudonymiser."""
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": odd}
    assert pseudonymise_resource(bundle, KEY, "k1")["entry"] == odd
    patient = {"resourceType": "Patient", "id": "p1", "contained": odd}
    assert pseudonymise_resource(patient, KEY, "k1").get("id") != "p1"
