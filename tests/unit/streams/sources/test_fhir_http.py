"""The FHIR REST ingress on a real aiohttp server (loopback, ephemeral port)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.settings import FhirToken
from streams.sources.fhir_auth import FhirAuthenticator
from streams.sources.fhir_http import build_app, openapi_spec
from streams.sources.fhir_ingest import CollectingSink
from triage.fhir.pseudonym import Pseudonymiser

pytestmark = pytest.mark.unit

FHIR = "application/fhir+json"
TOKEN = "unit-test-token-all-types"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
AUTHENTICATOR = FhirAuthenticator(
    [FhirToken(client="ehr", scopes=("system/*.write",), token=TOKEN)]
)
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
        app = build_app(Pseudonymiser(b"k", "k1"), "h1", sink, AUTHENTICATOR)
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
            await scenario(client, sink)

    asyncio.run(main())


async def post(client: TestClient, path: str, body: Any, ctype: str = FHIR) -> tuple[int, dict]:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    response = await client.post(path, data=data, headers={"Content-Type": ctype, **AUTH})
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
        status, outcome = await post(client, "/fhir", b'{"not": "a resource"}')
        assert status == 400
        assert outcome["issue"][0]["details"]["coding"][0]["code"] == "not_a_resource"
        hot = {**HR, "valueQuantity": {**HR["valueQuantity"], "value": 900}}
        status, outcome = await post(client, "/fhir/Observation", hot)
        assert status == 422
        assert outcome["issue"][0]["details"]["coding"][0]["code"] == "implausible_value"
        status, _ = await post(client, "/fhir", HR, ctype="text/plain")
        assert status == 415
        status, outcome = await post(client, "/fhir", HR, ctype=f"{FHIR}; fhirVersion=3.0")
        assert status == 400
        assert outcome["issue"][0]["details"]["coding"][0]["code"] == "unsupported_version"
        # the unreadable, the non-resource, the implausible; none for 415 / unsupported version
        assert len(sink.dead_letters) == 3

    run(scenario)


def test_transaction_is_all_or_nothing_batch_is_not() -> None:
    hot = {**HR, "valueQuantity": {**HR["valueQuantity"], "value": 900}}

    async def scenario(client: TestClient, sink: CollectingSink) -> None:
        status, outcome = await post(client, "/fhir", bundle("transaction", PATIENT, hot))
        assert status == 422 and not sink.events
        summary = outcome["issue"][-1]["diagnostics"]
        assert summary.startswith("2 received: 0 used (1 valid resources not published")
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


def refusals(reason: str) -> float:
    from streams.metrics import INGRESS_REFUSALS

    return INGRESS_REFUSALS.labels(source="fhir-http", reason=reason)._value.get()


def test_posts_need_a_token_with_the_scope_of_every_type_sent() -> None:
    observer = "observations-only-token"
    auth = FhirAuthenticator(
        [
            FhirToken(client="lab", scopes=("system/Observation.write",), token=observer),
            FhirToken(client="reader", scopes=("system/*.read",), token="read-only-token"),
        ]
    )

    async def scenario(client: TestClient, sink: CollectingSink) -> None:
        before = {r: refusals(r) for r in ("missing_token", "invalid_token", "insufficient_scope")}
        response = await client.post("/fhir", data=json.dumps(HR), headers={"Content-Type": FHIR})
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="ctriage-fhir"'
        outcome = await response.json(content_type=None)
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "login"
        assert outcome["issue"][0]["details"]["coding"][0]["code"] == "missing_token"

        def headers(token: str) -> dict[str, str]:
            return {"Content-Type": FHIR, "Authorization": f"Bearer {token}"}

        response = await client.post("/fhir", data=json.dumps(HR), headers=headers("nope"))
        assert response.status == 401 and "invalid_token" in response.headers["WWW-Authenticate"]
        # the lab may write Observations, not Patients: a Bundle with both is refused whole
        ok = await client.post("/fhir/Observation", data=json.dumps(HR), headers=headers(observer))
        assert ok.status == 200
        both = json.dumps(bundle("batch", PATIENT, HR))
        response = await client.post("/fhir", data=both, headers=headers(observer))
        assert response.status == 403
        outcome = await response.json(content_type=None)
        assert outcome["issue"][0]["code"] == "forbidden"
        assert "may not create Patient" in outcome["issue"][0]["details"]["text"]
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
        response = await client.post("/fhir", data=b"{", headers=headers("read-only-token"))
        assert response.status == 403  # holds no write scope at all, whatever the body
        assert [e.resource_type for e in sink.events] == ["Observation"]  # the 200 only
        assert not sink.dead_letters  # refused requests leave no dead letter: nothing was read
        assert refusals("missing_token") == before["missing_token"] + 1
        assert refusals("invalid_token") == before["invalid_token"] + 1
        assert refusals("insufficient_scope") == before["insufficient_scope"] + 2
        # what needs no token
        for path in ("/fhir/metadata", "/openapi.json", "/metrics"):
            assert (await client.get(path)).status == 200, path

    async def main() -> None:
        sink = CollectingSink()
        app = build_app(Pseudonymiser(b"k", "k1"), "h1", sink, auth)
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
            await scenario(client, sink)

    asyncio.run(main())


def test_metrics_count_refusals_and_process_memory() -> None:
    async def scenario(client: TestClient, sink: CollectingSink) -> None:
        await client.post("/fhir", data=b"{}", headers={"Content-Type": FHIR})
        text = await (await client.get("/metrics")).text()
        assert 'ctriage_ingress_refusals_total{reason="missing_token",source="fhir-http"}' in text
        assert "process_resident_memory_bytes" in text

    run(scenario)


class UnreachableKafka(CollectingSink):
    """A sink whose broker stopped answering (what KafkaFhirSink raises after its timeout)."""

    def send_resource(self, event: Any) -> None:
        from streams.sources.fhir_ingest import KafkaUnavailable

        raise KafkaUnavailable("cannot publish to fhir.resources at 127.0.0.1:1 within 10 s")


def test_kafka_unavailable_answers_503_with_retry_after() -> None:
    async def main() -> None:
        app = build_app(Pseudonymiser(b"k", "k1"), "h1", UnreachableKafka(), AUTHENTICATOR)
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
            response = await client.post(
                "/fhir/Observation", data=json.dumps(HR), headers={"Content-Type": FHIR, **AUTH}
            )
            assert response.status == 503 and response.headers["Retry-After"] == "30"
            outcome = await response.json(content_type=None)
            assert outcome["issue"][0]["code"] == "transient"

    asyncio.run(main())


def test_r5_content_sent_as_r4_is_told_the_header_to_send() -> None:
    encounter = {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": [{"coding": [{"code": "IMP"}]}],
        "subject": {"reference": "Patient/raw-1"},
    }

    async def scenario(client: TestClient, sink: CollectingSink) -> None:
        status, outcome = await post(client, "/fhir/Encounter", encounter)
        assert status == 422
        detail = outcome["issue"][0]["details"]["text"]
        assert "application/fhir+json; fhirVersion=5.0" in detail and "--fhir-version" not in detail

    run(scenario)
