"""FHIR ingress -> worker on a real Kafka broker: pending patients, late-data re-score, DLQ."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from streams import topics as t
from streams.records import DeadLetter, Quantification, RiskAssessment, StageTimings
from streams.settings import Settings
from triage.fhir.features import IMAGING_FEATURES
from triage.fhir.pseudonym import Pseudonymiser

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def settings(kafka_broker, port_offset: int, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    run_dir = tmp_path_factory.mktemp("fhir-stream")
    return Settings(
        run_dir=run_dir,
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "partitions": 4},
        store={"url": f"sqlite:///{run_dir / 'store.sqlite'}"},
        fhir={"pending_ttl_s": 3.0, "pending_sweep_s": 1.0},
        worker={
            "app_id": "ctriage-fhir-it",
            "data_dir": run_dir / "worker",
            "metrics_port": 29110 + port_offset,
            "web_port": 26076 + port_offset,
        },
    )


def observation(patient: str, loinc: str, value: float, unit: str, hours_before: float) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "subject": {"reference": f"Patient/{patient}"},
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "effectiveDateTime": (NOW - timedelta(hours=hours_before)).isoformat(),
        "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": unit},
    }


def consume(settings: Settings, topic: str, want: Any, timeout_s: float = 90) -> list[bytes]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not want(values):
            for records in consumer.poll(timeout_ms=1000).values():
                values += [r.value for r in records]
    finally:
        consumer.close()
    return values


def test_pending_patient_then_late_data_rescore(
    settings: Settings, worker, publish_fhir, pseudonymiser: Pseudonymiser
) -> None:
    publish = functools.partial(publish_fhir, settings.worker.hospital)
    raw = f"it-patient-{time.time_ns()}"
    pseudonym = pseudonymiser.patient(raw)
    # the Observation comes before its Patient: held, then folded in when the Patient arrives
    publish(observation(raw, "59408-5", 88, "%", hours_before=2))
    publish({"resourceType": "Patient", "id": raw, "gender": "female", "birthDate": "1950"})
    time.sleep(2)
    study_uid = f"1.2.826.0.1.{time.time_ns()}"
    quantification = Quantification(
        study_uid=study_uid,
        patient_pseudonym=pseudonym,
        biomarkers=dict.fromkeys(IMAGING_FEATURES, 10.0),
        lesion_model="test",
        lesion_model_version="1",
        ct_time=NOW.isoformat(),
        published_at=time.time(),
        hospital=settings.worker.hospital,
        timings=StageTimings(),
    )
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    producer.send(t.CT_QUANTIFICATION.name, key=pseudonym.encode(), value=quantification.to_bytes())
    producer.flush()
    producer.close()

    def risks(values: list[bytes]) -> list[RiskAssessment]:
        out = [RiskAssessment.model_validate_json(v) for v in values]
        return [r for r in out if r.study_uid == study_uid]

    # the first score; if the worker folded the Patient only after it (topics are consumed
    # independently), that late context already re-scored it: revisions count up from 0
    risks(consume(settings, t.TRIAGE_RISK.name, lambda v: len(risks(v)) >= 1))
    time.sleep(3)
    first = risks(consume(settings, t.TRIAGE_RISK.name, lambda v: False, 5))
    assert [r.revision for r in first] == list(range(len(first)))
    assert first[-1].completeness != "no clinical record"

    # a lab drawn before the CT arrives late: the study is scored again, same risk_id
    publish(observation(raw, "1988-5", 180, "mg/L", hours_before=1))
    more = risks(consume(settings, t.TRIAGE_RISK.name, lambda v: len(risks(v)) > len(first)))
    assert [r.revision for r in more] == list(range(len(first) + 1))
    assert {r.risk_id for r in more} == {first[0].risk_id}
    # the same resource again changes no feature: no further record
    publish(observation(raw, "1988-5", 180, "mg/L", hours_before=1))
    time.sleep(5)
    assert len(risks(consume(settings, t.TRIAGE_RISK.name, lambda v: False, 5))) == len(more)


def test_unknown_patient_is_dead_lettered_after_pending_time(
    settings: Settings, worker, publish_fhir, pseudonymiser: Pseudonymiser
) -> None:
    publish = functools.partial(publish_fhir, settings.worker.hospital)
    raw = f"it-nobody-{time.time_ns()}"
    publish(observation(raw, "8867-4", 90, "/min", hours_before=1))

    def letters(values: list[bytes]) -> list[DeadLetter]:
        out = [DeadLetter.model_validate_json(v) for v in values]
        return [d for d in out if d.key == pseudonymiser.patient(raw)]

    found = letters(consume(settings, t.FHIR_RESOURCES.dlq, lambda v: bool(letters(v))))
    assert [d.reason_code for d in found] == ["unknown_patient"]
    assert raw not in found[0].payload
