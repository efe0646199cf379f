"""``ctriage dlq replay`` on a real broker, a real worker and PostgreSQL.

Dead letters of ``ct.quantification`` (as the risk stage writes them when the store is down)
are replayed by reason once the cause is gone: each study is scored exactly once, a letter of
another reason stays where it is, and a second replay of the same letters adds no risk row and
no alert id twice (the same keys and payloads: the same ids).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import pytest
from kafka import KafkaProducer
from stream_checks import risk_rows_per_study, topic_values, wait_for

from streams import topics as t
from streams.dlq import StreamReason, build_dead_letter
from streams.records import Alert, Quantification, StageTimings
from streams.settings import Settings
from triage.fhir.features import IMAGING_FEATURES

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
UID_ROOT = f"2.25.{uuid.uuid4().int % 10**12}"
HOSPITAL = f"it-dlq-{RUN}"


@pytest.fixture(scope="module")
def settings(
    kafka_broker, postgres_server, port_offset: int, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    run_dir = tmp_path_factory.mktemp("dlq-replay")
    return Settings(
        run_dir=run_dir,
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "partitions": 4},
        store={"url": postgres_server.create_database(f"dlq_it_{RUN}")},
        worker={
            "app_id": f"ctriage-dlq-it-{RUN}",
            "data_dir": run_dir / "worker",
            "metrics_port": 29170 + port_offset,
            "web_port": 26136 + port_offset,
            "hospital": HOSPITAL,
        },
    )


def _quantification(i: int) -> Quantification:
    return Quantification(
        study_uid=f"{UID_ROOT}.{i}",
        patient_pseudonym=f"k1-dlq-{RUN}-{i}",
        biomarkers=dict.fromkeys(IMAGING_FEATURES, 40.0),
        lesion_model="test",
        lesion_model_version="1",
        ct_time=datetime.now(UTC).isoformat(),
        published_at=time.time(),
        hospital=HOSPITAL,
        timings=StageTimings(),
    )


def _dead_letter(settings: Settings, records: list[tuple[Quantification, str]]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    for offset, (record, reason) in enumerate(records):
        letter = build_dead_letter(
            stage="risk",
            reason=reason,
            error="OperationalError: connection refused",
            source_topic=t.CT_QUANTIFICATION.name,
            source_partition=0,
            source_offset=offset,
            key=record.patient_pseudonym,
            payload=record.to_bytes(),
        )
        producer.send(t.CT_QUANTIFICATION.dlq, key=record.patient_pseudonym.encode(),
                      value=letter.to_bytes())  # fmt: skip
    producer.flush()
    producer.close()


def _ctriage_dlq_replay(settings: Settings, reason: str) -> str:
    env = {**os.environ, "CTRIAGE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers}
    command = [sys.executable, "-m", "streams.cli", "dlq", "replay", "--topic",
               t.CT_QUANTIFICATION.dlq, "--reason", reason, "--idle-timeout-s", "3"]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_replay_scores_each_dead_letter_once_by_reason(settings, worker):
    store_down = [_quantification(i) for i in range(5)]
    other = _quantification(99)
    _dead_letter(
        settings,
        [(q, StreamReason.STORE_UNAVAILABLE) for q in store_down]
        + [(other, StreamReason.SCORING_FAILED)],
    )
    ours = {q.study_uid for q in store_down} | {other.study_uid}
    output = _ctriage_dlq_replay(settings, StreamReason.STORE_UNAVAILABLE)
    assert "replayed" in output and "store_unavailable" in output

    wanted = {q.study_uid for q in store_down}
    wait_for(
        lambda: set(risk_rows_per_study(settings.store.url, ours)) == wanted, 60, "replayed scored"
    )
    _ctriage_dlq_replay(settings, StreamReason.STORE_UNAVAILABLE)  # again: same ids
    time.sleep(8)  # let the worker process the second replay
    rows = risk_rows_per_study(settings.store.url, ours)
    assert rows == dict.fromkeys(wanted, 1), rows  # one row each; the other reason not replayed
    alerts = [
        Alert.model_validate_json(v)
        for v in topic_values(settings.kafka.bootstrap_servers, t.TRIAGE_ALERTS.name)
    ]
    alert_ids = [a.alert_id for a in alerts if a.study_uid in ours]
    assert len(alert_ids) == len(set(alert_ids)), "an alert id twice on triage.alerts"


def test_replay_refuses_a_topic_that_is_not_a_dead_letter_topic(settings):
    env = {**os.environ, "CTRIAGE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers}
    command = [sys.executable, "-m", "streams.cli", "dlq", "replay", "--topic", "ct.studies"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "not a dead-letter topic" in done.stdout
