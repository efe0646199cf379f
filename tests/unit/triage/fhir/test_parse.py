"""FHIR payload shapes, versions and typed rejections (triage.fhir_parse)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from triage.exceptions import FhirRejected, FhirRejectionReason
from triage.fhir.parse import (
    FhirVersionValues,
    ParsedResource,
    ParseFailure,
    describe_error,
    iter_ndjson,
    iter_resources,
    normalise_r5,
    validate_resource,
    version_from_content_type,
)

pytestmark = pytest.mark.unit

PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-02-03"}
OBS = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2024-03-01T10:00:00Z",
    "valueQuantity": {"value": 88, "system": "http://unitsofmeasure.org", "code": "/min"},
}
R5_ENCOUNTER = {
    "resourceType": "Encounter",
    "status": "in-progress",
    "class": [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}]}
    ],
    "subject": {"reference": "Patient/p1"},
    "actualPeriod": {"start": "2024-03-01T00:00:00Z"},
}


def bundle(kind: str, *resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": [{"resource": r} for r in resources]}


def types(parts: list[ParsedResource | ParseFailure]) -> list[str]:
    return [p.resource["resourceType"] for p in parts if isinstance(p, ParsedResource)]


@pytest.mark.parametrize(
    "kind", ["transaction", "batch", "collection", "searchset", "history", "message"]
)
def test_every_bundle_type_is_flattened(kind: str) -> None:
    parts = list(iter_resources(bundle(kind, PATIENT, OBS)))
    assert types(parts) == ["Patient", "Observation"]
    assert [p.location for p in parts] == ["Bundle.entry[0]", "Bundle.entry[1]"]


def test_nested_bundles_and_single_resources() -> None:
    nested = bundle("collection", PATIENT, bundle("batch", OBS))
    assert types(list(iter_resources(nested))) == ["Patient", "Observation"]
    assert types(list(iter_resources(OBS))) == ["Observation"]


def test_subscription_notification_skips_its_status() -> None:
    status = {
        "resourceType": "SubscriptionStatus",
        "status": "active",
        "type": "event-notification",
    }
    parts = list(iter_resources(bundle("subscription-notification", status, OBS)))
    assert types(parts) == ["Observation"]
    params = {"resourceType": "Parameters", "parameter": []}  # R4B backport notification
    assert types(list(iter_resources(bundle("history", params, OBS)))) == ["Observation"]


def test_unsupported_bundle_type_and_non_resources_are_failures() -> None:
    (failure,) = list(iter_resources(bundle("batch-response", OBS)))
    assert isinstance(failure, ParseFailure)
    assert failure.error.reason is FhirRejectionReason.UNSUPPORTED_BUNDLE_TYPE
    (failure,) = list(iter_resources([1, 2]))
    assert isinstance(failure, ParseFailure)
    assert failure.error.reason is FhirRejectionReason.NOT_A_RESOURCE  # valid JSON, no resource
    assert failure.error.why == "an array, not a JSON object with resourceType"


def test_ndjson_lines_are_independent() -> None:
    text = "\n".join([json.dumps(PATIENT), "{broken", "", json.dumps(OBS), "42"])
    parts = list(iter_ndjson(text))
    assert types(parts) == ["Patient", "Observation"]
    failures = [p for p in parts if isinstance(p, ParseFailure)]
    assert [f.location for f in failures] == ["line 2", "line 5"]
    assert [f.error.reason for f in failures] == [
        FhirRejectionReason.INVALID_JSON,  # "{broken": not JSON
        FhirRejectionReason.NOT_A_RESOURCE,  # "42": JSON, not a resource
    ]


def test_versions_from_content_type() -> None:
    assert version_from_content_type("application/fhir+json") is FhirVersionValues.R4
    assert (
        version_from_content_type("application/fhir+json; fhirVersion=4.0") is FhirVersionValues.R4
    )
    assert (
        version_from_content_type("application/fhir+json;fhirVersion=5.0") is FhirVersionValues.R5
    )
    with pytest.raises(FhirRejected) as info:
        version_from_content_type("application/fhir+json; fhirVersion=3.0")
    assert info.value.reason is FhirRejectionReason.UNSUPPORTED_VERSION


def test_r5_content_sent_as_r4_has_its_own_reason() -> None:
    with pytest.raises(FhirRejected) as info:
        validate_resource(R5_ENCOUNTER)
    assert info.value.reason is FhirRejectionReason.R5_CONTENT_AS_R4
    validate_resource(R5_ENCOUNTER, FhirVersionValues.R5)
    shaped = normalise_r5(R5_ENCOUNTER)
    assert shaped["class"]["code"] == "IMP" and shaped["period"]["start"]
    r5_only = {"resourceType": "Transport", "status": "completed", "intent": "order"}
    with pytest.raises(FhirRejected) as info:
        validate_resource(r5_only)
    assert info.value.reason is FhirRejectionReason.R5_CONTENT_AS_R4


def test_unknown_type_and_invalid_resource() -> None:
    with pytest.raises(FhirRejected) as info:
        validate_resource({"resourceType": "Nonsense"})
    assert info.value.reason is FhirRejectionReason.UNKNOWN_RESOURCE_TYPE
    with pytest.raises(FhirRejected) as info:
        validate_resource({k: v for k, v in OBS.items() if k != "status"})  # required
    assert info.value.reason is FhirRejectionReason.VALIDATION_FAILED


def test_validation_messages_never_echo_input_values() -> None:
    canary = "Canary-Surname-Xq7"
    bad = {**PATIENT, "name": [{"family": canary, "given": 7}], "birthDate": "not-a-date"}
    with pytest.raises(FhirRejected) as info:
        validate_resource(bad)
    assert canary not in str(info.value) and "not-a-date" not in str(info.value)
    assert "p1" not in info.value.why
    cause = info.value.__cause__
    assert cause is not None and canary not in describe_error(cause)


def _data_absent(code: str) -> dict[str, Any]:
    return {
        "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
        "valueCode": code,
    }


@pytest.mark.parametrize("version", list(FhirVersionValues))
def test_primitive_extensions_of_extension_values_are_valid_fhir(
    version: FhirVersionValues,
) -> None:
    """``_valueCode`` beside an Extension's ``valueCode`` (fhir.resources declares none)."""
    extension = {
        "url": "http://example.org/fhir/StructureDefinition/triage-source",
        "valueCode": "ed",
        "_valueCode": {"id": "v1", "extension": [_data_absent("unknown")]},
    }
    nested = {
        "url": "http://example.org/fhir/StructureDefinition/outer",
        "extension": [{**extension, "_valueString": {"extension": [_data_absent("masked")]}}],
    }
    obs = {**OBS, "extension": [extension], "modifierExtension": [], "_status": {"id": "s"}}
    obs["code"] = {**OBS["code"], "extension": [nested]}
    validate_resource(obs, version)
    # values absent, only their extensions (a data-absent-reason on the value itself)
    absent = {"url": extension["url"], "_valueCode": {"extension": [_data_absent("unknown")]}}
    validate_resource({**OBS, "extension": [absent]}, version)


@pytest.mark.parametrize(
    "bad",
    [
        {"_valueCode": {"unknown": 1}},  # not an Element
        {"_valueCode": {"extension": [{"valueCode": "x"}]}},  # nested extension without url
        {"_url": {"id": "u"}},  # Extension.url is an attribute: no primitive extension
        {"_valueQuantity": {"id": "q"}},  # Quantity is not a primitive
    ],
)
def test_invalid_primitive_extensions_are_still_refused(bad: dict[str, Any]) -> None:
    extension = {"url": "http://example.org/x", "valueCode": "a", **bad}
    with pytest.raises(FhirRejected) as info:
        validate_resource({**OBS, "extension": [extension]}, FhirVersionValues.R5)
    assert info.value.reason is FhirRejectionReason.VALIDATION_FAILED


def test_r5_hint_names_no_channel_option() -> None:
    """The library says what to declare; each ingress says how (CLI option, HTTP header)."""
    with pytest.raises(FhirRejected) as info:
        validate_resource(R5_ENCOUNTER)
    assert "FHIR 5.0" in info.value.why and "fhirVersion=" not in info.value.why
