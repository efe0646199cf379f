"""``ctriage fhir-endpoint`` as a hospital's interface engine uses it: HTTP POST -> real Kafka.

The endpoint runs as its own process, as in production. The real Synthea R4 bundles are POSTed
with a bearer token; every used resource lands on ``fhir.resources`` keyed by its pseudonym.
Requests without a valid token or without the scope get 401/403 OperationOutcomes, counted in
the endpoint's ``/metrics``. A broken payload is dead-lettered with its original quarantined
(``0600``). Names, exact birth dates and raw ids planted in the input appear nowhere outside
the quarantine: not on Kafka (resources, dead letters), not in the endpoint's log, not in its
metrics. With Kafka down the command says what is wrong and exits 2. schemathesis runs the
endpoint against its own OpenAPI document.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from kafka import KafkaConsumer, TopicPartition

from streams import topics as t
from streams.records import DeadLetter
from streams.sources.fhir_openapi import openapi_spec
from streams.topics import ensure_topics

pytestmark = pytest.mark.integration

#: the endpoint's run folder (its quarantine of rejected originals is under it)
ENDPOINT_RUN_DIR: list[Path] = []
KEY_VERSION = (
    "kfhirhttp"  # pseudonyms of this test start with it: other tests' records are not ours
)
EHR_TOKEN = "ehr-token-for-integration-tests-only"
LAB_TOKEN = "lab-token-for-integration-tests-only"
JWT_SECRET = "hs256-secret-for-integration-tests-only-0123456789"
ISSUER = "https://auth.hospital.example"
CANARY_FAMILY = "Zqcanaryfamily"
CANARY_GIVEN = "Zqcanarygiven"
CANARY_ID = "zq-canary-raw-id-5521"
CANARY_BIRTH = "1961-07-23"


def _launch(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "fhir-endpoint", "--loglevel", "info"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _env(bootstrap: str, port: int, run_dir: Path) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CTRIAGE_")}
    tokens = [
        {"client": "ehr", "scopes": ["system/*.write"], "token": EHR_TOKEN},
        {"client": "lab", "scopes": ["system/Observation.write"], "token": LAB_TOKEN},
    ]
    return {
        **inherited,
        "CTRIAGE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "CTRIAGE_FHIR__HTTP_PORT": str(port),
        "CTRIAGE_FHIR__TOKENS": json.dumps(tokens),
        "CTRIAGE_FHIR__JWT_HS256_SECRETS": json.dumps([JWT_SECRET]),
        "CTRIAGE_FHIR__JWT_ISSUER": ISSUER,
        "CTRIAGE_PSEUDONYM__KEY_VERSION": KEY_VERSION,
        "CTRIAGE_RUN_DIR": str(run_dir),
    }


@pytest.fixture(scope="module")
def endpoint(kafka_broker, port_offset: int, tmp_path_factory) -> Iterator[str]:
    """The FHIR endpoint CLI in its own process, publishing to the session's Kafka."""
    ensure_topics(kafka_broker.bootstrap_servers, 4)
    port = 28180 + port_offset
    run_dir = tmp_path_factory.mktemp("fhir-endpoint")
    process = _launch(_env(kafka_broker.bootstrap_servers, port, run_dir), run_dir / "endpoint.log")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/fhir/metadata", timeout=2):
                break
        except (urllib.error.URLError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                text = (run_dir / "endpoint.log").read_text(errors="replace")
                pytest.fail(f"the FHIR endpoint did not start:\n{text[-3000:]}")
            time.sleep(0.3)
    ENDPOINT_RUN_DIR.append(run_dir)
    yield url
    process.terminate()
    process.wait(timeout=30)


def post(
    url: str,
    body: bytes,
    content_type: str = "application/fhir+json",
    token: str | None = EHR_TOKEN,
) -> tuple[int, Any]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def metrics(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        return str(response.read().decode())


def refusals(text: str, reason: str) -> float:
    prefix = f'ctriage_ingress_refusals_total{{reason="{reason}",source="fhir-http"}} '
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(lines[0].split()[-1]) if lines else 0.0


def read_topic(bootstrap: str, topic: str, want: int | None, timeout_s: float = 60) -> list[Any]:
    """Records of ``topic`` (keyed by this test's key version unless ``want`` is None: all)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    mine: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (want is None or len(mine) < want):
        batch = consumer.poll(timeout_ms=1000)
        if want is None and not batch and mine:
            break
        for records in batch.values():
            if want is None:
                mine += records
            else:
                mine += [r for r in records if (r.key or b"").startswith(KEY_VERSION.encode())]
    consumer.close()
    return mine


def test_synthea_bundles_posted_over_http_reach_kafka_pseudonymised(
    endpoint: str, kafka_broker, shared_data: Path
) -> None:
    bundles = sorted((shared_data / "fhir" / "synthea-covid" / "bundles").glob("*.json"))
    canaries: set[str] = set()
    for path in bundles:
        for entry in json.loads(path.read_text())["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "Patient":
                canaries |= {resource["id"], json.dumps(resource["birthDate"])}
                canaries |= {json.dumps(n["family"]) for n in resource["name"]}
                canaries |= {i["value"] for i in resource.get("identifier", [])}
    for path in bundles:
        status, outcome = post(f"{endpoint}/fhir", path.read_bytes())
        assert status == 200, outcome
        assert outcome["resourceType"] == "OperationOutcome"

    # 10 patients + their 54 vital-sign Observations (the same counts as the folder ingest)
    records = read_topic(kafka_broker.bootstrap_servers, t.FHIR_RESOURCES.name, want=64)
    assert len(records) == 64
    assert len({r.key for r in records}) == 10
    text = "\n".join(r.value.decode() for r in records)
    assert not [c for c in canaries if c in text]


def test_unauthenticated_and_unauthorised_posts_are_refused_and_counted(endpoint: str) -> None:
    observation = json.dumps(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/zq-http-auth-1"},
            "effectiveDateTime": "2024-03-01T10:00:00Z",
            "valueQuantity": {"value": 80, "system": "http://unitsofmeasure.org", "code": "/min"},
        }
    ).encode()
    patient = json.dumps({"resourceType": "Patient", "id": "zq-http-auth-1"}).encode()
    before = metrics(endpoint)
    status, outcome = post(f"{endpoint}/fhir", observation, token=None)
    assert (status, outcome["issue"][0]["code"]) == (401, "login")
    status, outcome = post(f"{endpoint}/fhir", observation, token="not-a-known-token")
    assert (status, outcome["resourceType"]) == (401, "OperationOutcome")
    assert post(f"{endpoint}/fhir/Observation", observation, token=LAB_TOKEN)[0] == 200
    status, outcome = post(f"{endpoint}/fhir/Patient", patient, token=LAB_TOKEN)
    assert (status, outcome["issue"][0]["code"]) == (403, "forbidden")
    # a SMART backend-services access token (JWT) signed with the configured secret
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "adt-feed", "exp": now + 60, "scope": "system/Patient.c"}
    signed = jwt.encode(claims, JWT_SECRET, "HS256")
    assert post(f"{endpoint}/fhir", patient, token=signed)[0] == 200
    expired = jwt.encode({**claims, "exp": now - 600}, JWT_SECRET, "HS256")
    status, outcome = post(f"{endpoint}/fhir", patient, token=expired)
    assert (status, outcome["issue"][0]["code"]) == (401, "expired")
    after = metrics(endpoint)
    for reason, more in (
        ("missing_token", 1),
        ("invalid_token", 1),
        ("insufficient_scope", 1),
        ("expired_token", 1),
    ):
        assert refusals(after, reason) == refusals(before, reason) + more, reason
    assert "process_resident_memory_bytes" in after
    log = (ENDPOINT_RUN_DIR[0] / "endpoint.log").read_text(errors="replace")
    assert "fhir-http refused lab@127.0.0.1: insufficient_scope" in log


def test_broken_payload_gets_operation_outcome_and_dead_letter(endpoint: str, kafka_broker) -> None:
    marker = f"ctriage-broken-{time.time_ns()}"
    body = f'{{"resourceType": "Bundle", "id": "{marker}", "type": "batch", "entry": ['.encode()
    status, outcome = post(f"{endpoint}/fhir", body)
    assert status == 400
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] in ("error", "fatal")

    letters = [
        DeadLetter.model_validate_json(r.value)
        for r in read_topic(kafka_broker.bootstrap_servers, t.FHIR_RESOURCES.dlq, want=None)
    ]
    # the original may hold identifiers: it stays on the ingress side, the dead letter names it
    quarantine = ENDPOINT_RUN_DIR[0] / "quarantine"
    ours = [
        letter
        for letter in letters
        if (held := json.loads(letter.payload).get("quarantined"))
        and (quarantine / held).is_file()
        and marker in (quarantine / held).read_text()
    ]
    assert ours, "no dead letter names the quarantined original"
    assert ours[0].reason_code == "invalid_json"
    assert json.loads(ours[0].payload)["operationOutcome"]["resourceType"] == "OperationOutcome"
    assert stat.S_IMODE(quarantine.stat().st_mode) == 0o700
    held_file = quarantine / json.loads(ours[0].payload)["quarantined"]
    assert stat.S_IMODE(held_file.stat().st_mode) == 0o600


def test_planted_identifiers_stay_in_the_quarantine(endpoint: str, kafka_broker) -> None:
    """PHI canary: a rejected Patient and a used one, with planted name, birth date and id."""
    patient = {
        "resourceType": "Patient",
        "id": CANARY_ID,
        "name": [{"family": CANARY_FAMILY, "given": [CANARY_GIVEN]}],
        "identifier": [{"system": "urn:mrn", "value": f"{CANARY_ID}-mrn"}],
        "birthDate": CANARY_BIRTH,
    }
    rejected = {**patient, "gender": ["not", "a", "code"]}  # invalid: dead-lettered
    implausible = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        "subject": {"reference": f"Patient/{CANARY_ID}", "display": CANARY_FAMILY},
        "effectiveDateTime": "2024-03-01T10:00:00Z",
        "valueQuantity": {"value": 95, "system": "http://unitsofmeasure.org", "code": "Cel"},
    }
    for body in (
        {"resourceType": "Bundle", "type": "batch", "entry": [{"resource": patient}]},
        {"resourceType": "Bundle", "type": "batch", "entry": [{"resource": rejected}]},
        implausible,
    ):
        post(f"{endpoint}/fhir", json.dumps(body).encode())
    canaries = [CANARY_ID, CANARY_FAMILY, CANARY_GIVEN, CANARY_BIRTH]
    topics = (t.FHIR_RESOURCES.name, t.FHIR_RESOURCES.dlq)
    bootstrap = kafka_broker.bootstrap_servers
    wire = [r.value.decode() for topic in topics for r in read_topic(bootstrap, topic, None)]
    letters = [DeadLetter.model_validate_json(v) for v in wire if '"reason_code"' in v]
    assert {"validation_failed", "implausible_value"} <= {letter.reason_code for letter in letters}
    places = {
        "Kafka (resources and dead letters)": "\n".join(wire),
        "endpoint log": (ENDPOINT_RUN_DIR[0] / "endpoint.log").read_text(errors="replace"),
        "metrics": metrics(endpoint),
    }
    for place, text in places.items():
        assert not [c for c in canaries if c in text], f"planted identifier in the {place}"
    held = "\n".join(p.read_text() for p in (ENDPOINT_RUN_DIR[0] / "quarantine").iterdir())
    assert CANARY_FAMILY in held  # where it belongs: the ingress side only


def test_endpoint_without_kafka_says_so_and_exits(port_offset: int, tmp_path: Path) -> None:
    """No broker: a clear message and exit code 2 once the wait is over, no raw traceback."""
    env = {**_env("127.0.0.1:9", 28189 + port_offset, tmp_path), "CTRIAGE_FHIR__KAFKA_WAIT_S": "3"}
    process = _launch(env, tmp_path / "endpoint.log")
    try:
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    text = (tmp_path / "endpoint.log").read_text(errors="replace")
    assert code == 2, text
    assert "error: no Kafka broker answered at 127.0.0.1:9 within 3 s" in text
    assert "Traceback" not in text


# --- schemathesis: the endpoint against its own OpenAPI document -------------------------

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 17,
        "headers": {"Authorization": f"Bearer {EHR_TOKEN}"},
        "generation": {"max-examples": 25},
        "checks": {
            # a schema-valid body is rarely a valid FHIR resource: the typed refusal is right
            "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "415", "422"]}
        },
    }
)
schema = schemathesis.openapi.from_dict(openapi_spec(), config=CONFIG)


@schemathesis.serializer("application/fhir+ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    """An NDJSON body as schemathesis generates it (a string) sent as its UTF-8 text."""
    return (value if isinstance(value, str) else json.dumps(value)).encode("utf-8")


@pytest.fixture(scope="module")
def urllib3_future_compatible() -> Iterator[None]:
    """As in test_admin_api.py: schemathesis 4.32 with urllib3-future holding ``urllib3``."""
    import schemathesis.transport.requests as transport

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transport, "_count_opened_connections", lambda session: 0)
        yield


def test_the_fuzzed_document_is_the_served_one(endpoint: str) -> None:
    with urllib.request.urlopen(f"{endpoint}/openapi.json", timeout=10) as response:
        assert json.loads(response.read()) == openapi_spec()


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_endpoint_conforms_to_its_openapi(
    case, endpoint: str, urllib3_future_compatible: None
) -> None:
    response = case.call_and_validate(base_url=endpoint)
    if response.status_code >= 400 and response.headers.get("Content-Type", "").startswith(
        "application/fhir+json"
    ):
        assert response.json()["resourceType"] == "OperationOutcome"


def test_ingest_fhir_cli_publishes_counts_and_quarantines_privately(
    kafka_broker, shared_data: Path, tmp_path: Path
) -> None:
    """``ctriage ingest-fhir`` as a user runs it: real bundles plus broken files, real Kafka."""
    folder = tmp_path / "in"
    folder.mkdir()
    for source in sorted((shared_data / "fhir" / "synthea-covid" / "bundles").glob("*.json"))[:3]:
        (folder / source.name).write_bytes(source.read_bytes())
    (folder / "broken.json").write_text('{"resourceType": "Bundle", "type": "batch", "entry": [')
    (folder / "list.json").write_text("[1, 2, 3]")
    run_dir = tmp_path / "run"
    env = _env(kafka_broker.bootstrap_servers, 0, run_dir)

    def ingest(*extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "streams.cli", "ingest-fhir", str(folder), *extra]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    dry = ingest("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert not run_dir.exists()  # a dry run writes nothing
    done = ingest()
    assert done.returncode == 0, done.stderr
    total = next(line for line in done.stdout.splitlines() if line.startswith("total")).split()
    received, used, ignored, rejected = map(int, total[1:])
    assert received == used + ignored + rejected and rejected == 2
    assert (
        total == next(line for line in dry.stdout.splitlines() if line.startswith("total")).split()
    )
    reasons = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("rejected ")]
    assert sorted(reasons) == ["invalid_json", "not_a_resource"]
    quarantine = run_dir / "quarantine"
    held = list(quarantine.iterdir())
    assert len(held) == 2 and stat.S_IMODE(quarantine.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in held)
    assert "Traceback" not in done.stderr
