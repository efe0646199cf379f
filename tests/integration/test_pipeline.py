"""The whole flow on a real Kafka broker and a real Triton server: replay -> risks and alerts."""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from grafana_sql import grafana_expand, query
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from dashboards import store
from dashboards.catalog import DASHBOARDS
from inference.client import UNET_MODEL
from streams import topics as t
from streams.demo import DemoOptions, WorkerProcess, run_pipeline
from streams.records import CtStudy, FhirResourceEvent
from streams.settings import Settings
from streams.sources.fhir_ingest import FhirIngress, KafkaFhirSink
from streams.sources.quarantine import Quarantine
from triage.cohort import generate_cohort
from triage.fhir.pseudonym import Pseudonymiser

pytestmark = pytest.mark.integration

PATIENTS = 30


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    # seed 13: test_follow_up's cohort (seed 11) would share these study UIDs on the shared broker
    generate_cohort(out, n_patients=PATIENTS, seed=13, matrix=256, slices=48)
    return out


@pytest.fixture(scope="module")
def settings(
    kafka_broker,
    triton_server,
    postgres_server,
    port_offset: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    run_dir = tmp_path_factory.mktemp("pipeline")
    triton_port = int(triton_server.http_url.rsplit(":", 1)[1])
    return Settings(
        run_dir=run_dir,
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "partitions": 4},
        # the learned model, as in the demo and the worker's default (the phantoms at 256 x 256
        # are within its range: docs/imaging-performance.md)
        triton={"http_port": triton_port, "model_name": UNET_MODEL},
        store={"url": postgres_server.create_database("pipeline_it")},  # the real store engine
        worker={
            "app_id": "ctriage-it",
            "data_dir": run_dir / "worker",
            "metrics_port": 29100 + port_offset,
            "web_port": 26066 + port_offset,
        },
    )


def _publish_malformed(settings: Settings, tmp_path: Path) -> dict[str, int]:
    """One bad message of each kind; returns the expected dead letters per DLQ topic."""
    not_dicom = tmp_path / "not-dicom"
    not_dicom.mkdir()
    (not_dicom / "1.dcm").write_bytes(b"this is not DICOM")
    study = CtStudy(
        event_id="bad-1",
        study_uid="1.2.3.999",
        patient_pseudonym="k1-bad",
        study_uri=not_dicom.as_uri(),
        source="test",
        ct_time="2026-01-01T00:00:00+00:00",
        published_at=time.time(),
        hospital="demo-hospital",
    )
    fhir = FhirResourceEvent(
        event_id="bad-2",
        patient_pseudonym="k1-bad",
        resource_type="Observation",
        resource={"resourceType": "Observation", "status": "not-a-status", "code": {}},
        source="test",
        event_time="2026-01-01T00:00:00+00:00",
        published_at=time.time(),
        hospital="demo-hospital",
    )
    sends = [
        (t.CT_STUDIES.name, b"{not json"),
        (t.CT_STUDIES.name, study.to_bytes()),
        (t.CT_STUDIES.name, study.model_copy(update={"study_uri": "s3://x/y"}).to_bytes()),
        (t.FHIR_RESOURCES.name, b"[]"),
        (t.FHIR_RESOURCES.name, fhir.to_bytes()),
        (t.CT_QUANTIFICATION.name, json.dumps({"study_uid": "1.2.3"}).encode()),
        (t.CAPACITY_EVENTS.name, b"\xff\xfe"),
        (t.TRIAGE_CONFIG.name, json.dumps({"hospital": "x", "threshold": 7}).encode()),
    ]
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    for topic, value in sends:
        producer.send(topic, key=b"k1-bad", value=value)
    producer.flush()
    producer.close()
    expected: dict[str, int] = {}
    for topic, _ in sends:
        expected[f"{topic}.dlq"] = expected.get(f"{topic}.dlq", 0) + 1
    return expected


def test_replay_end_to_end(settings, worker, cohort, tmp_path):
    expected_dead = _publish_malformed(settings, tmp_path)
    report, collector, _ = run_pipeline(
        settings, cohort, DemoOptions(patients=PATIENTS, speed=86400.0, timeout_s=600)
    )
    outcome = collector.outcome
    assert report.studies == PATIENTS

    # every CT study yields exactly one first risk record (late clinical data may add revisions);
    # other tests share the broker, so only this replay's studies count
    ours = set(report.study_uids)
    assert ours <= set(outcome.risks)
    assert all(outcome.first_scorings[uid] == 1 for uid in ours), outcome.first_scorings

    # at most one alert per study, each carrying model and threshold versions
    our_alerts = [a for a in outcome.alerts.values() if a.study_uid in ours]
    alerted = [a.study_uid for a in our_alerts]
    assert len(alerted) == len(set(alerted))
    for alert in our_alerts:
        assert alert.model_version and alert.threshold_version
        assert alert.probability >= settings.worker.alert_threshold
        assert alert.top_features
    our_risks = [r for r in outcome.risks.values() if r.study_uid in ours]
    assert any(r.alert for r in our_risks), "a 30-patient cohort raises no alert"
    assert all(r.completeness for r in our_risks)

    # every malformed message is in its dead-letter twin, with a reason, while the rest flowed
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        by_topic: dict[str, int] = {}
        mine = [letter for letter in outcome.dead_letters if letter.key == "k1-bad"]
        for letter in mine:
            by_topic[f"{letter.source_topic}.dlq"] = (
                by_topic.get(f"{letter.source_topic}.dlq", 0) + 1
            )
        if by_topic == expected_dead:
            break
        collector.poll(1.0)
    assert by_topic == expected_dead
    reasons = {letter.reason_code for letter in mine}
    assert "malformed_record" in reasons
    assert "unsupported_uri" in reasons
    assert "not_dicom" in reasons
    assert all(letter.payload for letter in mine)

    # a forecast for the next 7 days exists
    assert outcome.forecast is not None
    assert len(outcome.forecast.days) == 7

    # the store has one row per risk and per alert (idempotent upserts)
    engine = store.make_engine(settings.store.url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            risks = conn.execute(
                store.risks.select().where(store.risks.c.study_uid.in_(ours))
            ).fetchall()
        if len(risks) == PATIENTS:
            break
        time.sleep(1)
    engine.dispose()
    assert len(risks) == PATIENTS
    collector.close()


# PHI canary: identifiers planted in input that ingress accepts (pseudonymised) and rejects
# (dead-lettered, original quarantined), on top of every identifier of the replayed cohort
PLANTED_ID = "zq-pipeline-canary-3141"
PLANTED_NAMES = ("Zqplantedfamily", "Zqplantedgiven")
PLANTED_BIRTH = "1948-11-23"


def _planted_resources() -> list[dict[str, Any]]:
    patient = {
        "resourceType": "Patient",
        "id": PLANTED_ID,
        "name": [{"family": PLANTED_NAMES[0], "given": [PLANTED_NAMES[1]]}],
        "identifier": [{"system": "urn:mrn", "value": f"{PLANTED_ID}-mrn"}],
        "birthDate": PLANTED_BIRTH,
    }
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        "subject": {"reference": f"Patient/{PLANTED_ID}", "display": PLANTED_NAMES[0]},
        "effectiveDateTime": "2024-03-01T10:00:00+00:00",
        "valueQuantity": {"value": 38.2, "system": "http://unitsofmeasure.org", "code": "Cel"},
    }
    implausible = {**observation, "valueQuantity": {**observation["valueQuantity"], "value": 95}}
    invalid = {**patient, "gender": ["not", "a", "code"]}
    return [patient, observation, implausible, invalid]


def _plant(settings: Settings, tmp_path: Path) -> None:
    """Send the planted resources through FHIR ingress, as ``ingest-fhir`` does."""
    key = settings.pseudonym.key.get_secret_value().encode()
    sink = KafkaFhirSink(settings.kafka.bootstrap_servers)
    ingress = FhirIngress(
        Pseudonymiser(key, settings.pseudonym.key_version),
        "demo-hospital",
        sink,
        "canary",
        quarantine=Quarantine(tmp_path / "quarantine"),
    )
    try:
        reasons = []
        for resource in _planted_resources():
            report = ingress.ingest_json(json.dumps(resource), origin=f"{PLANTED_ID}.json")
            reasons += [r.reason for r in report.rejections]
    finally:
        sink.close()
    assert sorted(reasons) == ["implausible_value", "validation_failed"]


def _dashboard_rows(engine: Any) -> list[dict[str, Any]]:
    """Every SQL query of every dashboard, run on the pipeline's store over all of time."""
    start, end = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    for build in DASHBOARDS.values():
        model = build()
        queries = [v["query"] for v in model["templating"]["list"] if v["type"] == "query"]
        queries += [
            t["rawSql"] for p in model["panels"] for t in p.get("targets", []) if "rawSql" in t
        ]
        for sql in queries:
            expanded = grafana_expand(sql, start, end, hospital="demo-hospital", unit="icu")
            rows += query(engine, expanded)
    return rows


def test_no_identifiers_downstream(settings, worker, cohort, tmp_path, caplog):
    """Names, birth dates and raw ids never appear downstream of ingress, anywhere we can look.

    The replayed cohort's identifiers and planted ones (accepted and rejected at ingress) are
    searched on every topic (dead letters included), in the store, in the results of every
    dashboard query, in the worker's and the ingress' logs and in the worker's metrics.
    """
    with caplog.at_level(logging.INFO):
        _plant(settings, tmp_path)
    engine = store.make_engine(settings.store.url)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # the worker sinks the planted dead letters
        with engine.connect() as conn:
            planted = conn.execute(
                store.dead_letters.select().where(store.dead_letters.c.source_topic == "canary")
            ).fetchall()
        if len(planted) == 2:
            break
        time.sleep(1)
    assert len(planted) == 2
    bundles = [json.loads(p.read_text()) for p in (cohort / "fhir").glob("*.json")]
    canaries: set[str] = set()
    for bundle in bundles:
        for entry in bundle.get("entry", []):
            res = entry["resource"]
            if res["resourceType"] == "Patient":
                # raw ids anywhere (they would sit inside references); names and birth dates
                # as whole JSON strings (a short surname may be a substring of a code display)
                canaries.add(res["id"])
                canaries.add(json.dumps(res["birthDate"]))
                for name in res.get("name", []):
                    canaries.add(json.dumps(name["family"]))
                    canaries.update(json.dumps(given) for given in name.get("given", []))
    canaries.discard("")
    canaries |= {PLANTED_ID, PLANTED_BIRTH, *PLANTED_NAMES}
    topics = [spec.name for spec in t.ALL_TOPICS] + [s.dlq for s in t.ALL_TOPICS if s.has_dlq]
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
    )
    parts = [
        TopicPartition(name, p)
        for name in topics
        for p in consumer.partitions_for_topic(name) or {0}
    ]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    seen = 0
    leaks: list[str] = []
    while True:
        batch = consumer.poll(timeout_ms=2000)
        if not batch:
            break
        for records in batch.values():
            for record in records:
                seen += 1
                text = (record.value or b"").decode("utf-8", "replace")
                leaks += [c for c in canaries if c in text]
    consumer.close()
    assert seen > PATIENTS
    assert not leaks, f"identifiers leaked downstream: {sorted(set(leaks))[:5]}"

    # nor in the reporting store that the dashboards read, nor in the worker's log
    rows = 0
    with engine.connect() as conn:
        for table in store.metadata.sorted_tables:
            for row in conn.execute(table.select()):
                rows += 1
                for cell in map(str, row):
                    # a whole cell that is an identifier, or one inside a JSON payload
                    leaks += [c for c in canaries if c in cell or c.strip('"') == cell]
    assert rows > PATIENTS
    assert not leaks, f"identifiers leaked into the store: {sorted(set(leaks))[:5]}"
    results = _dashboard_rows(engine)
    engine.dispose()
    assert results, "the dashboards' queries returned nothing to search"
    for row in results:
        for cell in map(str, row.values()):
            leaks += [c for c in canaries if c in cell or c.strip('"') == cell]
    assert not leaks, f"identifiers in dashboard query results: {sorted(set(leaks))[:5]}"
    url = f"http://127.0.0.1:{settings.worker.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        scraped = response.read().decode()
    assert "process_resident_memory_bytes" in scraped
    places = {
        "worker log": WorkerProcess(settings).log_path.read_text(errors="replace"),
        "ingress log": caplog.text,
        "worker metrics": scraped,
    }
    for place, text in places.items():
        leaks = [c for c in canaries if c in text]
        assert not leaks, f"identifiers leaked into the {place}: {sorted(set(leaks))[:5]}"
    quarantined = "\n".join(p.read_text() for p in (tmp_path / "quarantine").iterdir())
    assert PLANTED_NAMES[0] in quarantined  # the originals stay at ingress, and only there
