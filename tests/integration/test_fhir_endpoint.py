"""``ctriage fhir-endpoint`` as a hospital's interface engine uses it: HTTP POST -> real Kafka.

The real Synthea R4 bundles are POSTed to the running endpoint; every used resource lands on
``fhir.resources`` keyed by its pseudonym, with no name, birth date or identifier, and a broken
payload is answered with an OperationOutcome and dead-lettered on ``fhir.resources.dlq``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from streams import topics as t
from streams.records import DeadLetter
from streams.topics import ensure_topics

pytestmark = pytest.mark.integration

#: the endpoint's run folder (its quarantine of rejected originals is under it)
ENDPOINT_RUN_DIR: list[Path] = []
KEY_VERSION = (
    "kfhirhttp"  # pseudonyms of this test start with it: other tests' records are not ours
)


@pytest.fixture(scope="module")
def endpoint(kafka_broker, port_offset: int, tmp_path_factory) -> Iterator[str]:
    """The FHIR endpoint CLI in its own process, publishing to the session's Kafka."""
    ensure_topics(kafka_broker.bootstrap_servers, 4)
    port = 28180 + port_offset
    run_dir = tmp_path_factory.mktemp("fhir-endpoint")
    env = {
        **os.environ,
        "CTRIAGE_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "CTRIAGE_FHIR__HTTP_PORT": str(port),
        "CTRIAGE_PSEUDONYM__KEY_VERSION": KEY_VERSION,
        "CTRIAGE_RUN_DIR": str(run_dir),
    }
    log = (run_dir / "endpoint.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "fhir-endpoint", "--loglevel", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/fhir/metadata", timeout=2):
                break
        except (urllib.error.URLError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log.close()
                text = (run_dir / "endpoint.log").read_text(errors="replace")
                pytest.fail(f"the FHIR endpoint did not start:\n{text[-3000:]}")
            time.sleep(0.3)
    ENDPOINT_RUN_DIR.append(run_dir)
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


def post(url: str, body: bytes, content_type: str = "application/fhir+json") -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def read_topic(bootstrap: str, topic: str, want: int, timeout_s: float = 60) -> list[Any]:
    """Records of ``topic`` whose key starts with this test's key version (until ``want``)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    mine: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(mine) < want and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
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


def test_broken_payload_gets_operation_outcome_and_dead_letter(endpoint: str, kafka_broker) -> None:
    marker = f"ctriage-broken-{time.time_ns()}"
    body = f'{{"resourceType": "Bundle", "id": "{marker}", "type": "batch", "entry": ['.encode()
    status, outcome = post(f"{endpoint}/fhir", body)
    assert status == 400
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] in ("error", "fatal")

    consumer = KafkaConsumer(
        bootstrap_servers=kafka_broker.bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    topic = t.FHIR_RESOURCES.dlq
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    letters: list[DeadLetter] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=1000)
        if not batch and letters:
            break
        for records in batch.values():
            letters += [DeadLetter.model_validate_json(r.value) for r in records]
    consumer.close()
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
