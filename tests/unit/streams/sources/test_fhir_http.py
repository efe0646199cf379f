"""The FHIR REST ingress on a real aiohttp server (loopback, ephemeral port)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.sources.fhir_http import build_app, openapi_spec
from streams.sources.fhir_ingest import CollectingSink
from triage.fhir.pseudonym import Pseudonymiser

pytestmark = pytest.mark.unit

FHIR = "application/fhir+json"
PATIENT = {"resourceType": "Patient", "id": "raw-1", "gender": "male", "birthDate": "1970-05-06"}
HR = {
    "resourceType": "Observation",
    "status": "final",
    "subject": {"reference": "Patient/raw-1"},
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "effectiveDateTime": "2024-03-01T10:00:00Z",
    "valueQuantity": {"value": 90, "system": "http://unitsofmeasure.org", "code": "/min"},
}


def run(scenario: Callable[[TestClient, CollectingSink], Awaitable[None]]) -> None:
    async def main() -> None:
        sink = CollectingSink()
        app = build_app(Pseudonymiser(b"k", "k1"), "h1", sink)
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
            await scenario(client, sink)

    asyncio.run(main())


async def post(client: TestClient, path: str, body: Any, ctype: str = FHIR) -> tuple[int, dict]:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    response = await client.post(path, data=data, headers={"Content-Type": ctype})
    return response.status, await response.json(content_type=None)


def bundle(kind: str, *resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": [{"resource": r} for r in resources]}


def test_bundle_accepted_with_information_outcome() -> None:
    async def scenario(client: TestClient, sink: CollectingSink) -> None:
        status, outcome = await post(client, "/fhir", bundle("transaction", PATIENT, HR))
        assert status == 200 and outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][-1]["severity"] == "information"
        assert [e.resource_type for e in sink.events] == ["Patient", "Observation"]
        assert "raw-1" not in "".join(e.to_bytes().decode() for e in sink.events)

    run(scenario)


def test_single_resource_by_type_and_mismatch() -> None:
    async def scenario(client: TestClient, sink: CollectingSink) -> None:
        assert (await post(client, "/fhir/Observation", HR))[0] == 200
        status, outcome = await post(client, "/fhir/Patient", HR)
        assert status == 400 and outcome["issue"][0]["code"] == "invalid"

    run(scenario)


def test_errors_answer_operation_outcome() -> None:
    async def scenario(client: TestClient, sink: CollectingSink) -> None:
        status, outcome = await post(client, "/fhir", b"{nope")
        assert status == 400
        assert outcome["issue"][0]["details"]["coding"][0]["code"] == "invalid_json"
        hot = {**HR, "valueQuantity": {**HR["valueQuantity"], "value": 900}}
        status, outcome = await post(client, "/fhir/Observation", hot)
        assert status == 422
        assert outcome["issue"][0]["details"]["coding"][0]["code"] == "implausible_value"
        status, _ = await post(client, "/fhir", HR, ctype="text/plain")
        assert status == 415
        status, outcome = await post(client, "/fhir", HR, ctype=f"{FHIR}; fhirVersion=3.0")
        assert status == 400
        assert outcome["issue"][0]["details"]["coding"][0]["code"] == "unsupported_version"
        assert len(sink.dead_letters) == 2  # the unreadable, the implausible; none for 415/400

    run(scenario)


def test_transaction_is_all_or_nothing_batch_is_not() -> None:
    hot = {**HR, "valueQuantity": {**HR["valueQuantity"], "value": 900}}

    async def scenario(client: TestClient, sink: CollectingSink) -> None:
        status, outcome = await post(client, "/fhir", bundle("transaction", PATIENT, hot))
        assert status == 422 and not sink.events
        status, outcome = await post(client, "/fhir", bundle("batch", PATIENT, hot))
        assert status == 200 and [e.resource_type for e in sink.events] == ["Patient"]
        assert outcome["issue"][0]["expression"] == ["body:Bundle.entry[1]"]

    run(scenario)


def test_ndjson_and_subscription_notification() -> None:
    async def scenario(client: TestClient, sink: CollectingSink) -> None:
        ndjson = "\n".join(json.dumps(r) for r in (PATIENT, HR))
        assert (await post(client, "/fhir", ndjson, ctype="application/fhir+ndjson"))[0] == 200
        status_entry = {
            "resourceType": "SubscriptionStatus",
            "status": "active",
            "type": "event-notification",
        }
        note = bundle("subscription-notification", status_entry, HR)
        status, _ = await post(
            client, "/fhir/subscription-notification", note, f"{FHIR}; fhirVersion=5.0"
        )
        assert status == 200
        assert [e.fhir_version for e in sink.events] == ["4.0", "4.0", "5.0"]

    run(scenario)


def test_openapi_and_metadata(repo_root: Path) -> None:
    spec = openapi_spec()
    assert spec["openapi"].startswith("3.")
    assert {"/fhir", "/fhir/{resourceType}", "/fhir/subscription-notification"} <= set(
        spec["paths"]
    )

    async def scenario(client: TestClient, sink: CollectingSink) -> None:
        response = await client.get("/openapi.json")
        assert response.status == 200 and (await response.json()) == spec
        response = await client.get("/fhir/metadata")
        assert (await response.json(content_type=None))["resourceType"] == "CapabilityStatement"

    run(scenario)
