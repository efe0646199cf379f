"""A worker configured with a site-recalibrated model folder scores with it, end to end.

The site's outcomes are REAL: 6,000 held-out Mexico patients with their intubation outcome
(``ctriage risk recalibrate`` on them writes the folder: ``site_models`` in the conftest). The
worker is pointed at the folder by its setting ``CTRIAGE_WORKER__RISK_MODEL_PATH`` (handed to
the worker process as environment); every risk record and alert must carry the recalibrated
version ``<base>+site.<id>``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from streams import topics as t
from streams.demo import WorkerProcess
from streams.records import Alert, Quantification, RiskAssessment, StageTimings
from streams.settings import Settings
from triage.fhir.features import IMAGING_FEATURES
from triage.fhir.pseudonym import Pseudonymiser
from triage.risk.model import RiskModel

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
HOSPITAL = f"it-site-{RUN}"


@pytest.fixture(scope="module")
def settings(
    kafka_broker, port_offset: int, site_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    run_dir = tmp_path_factory.mktemp("site")
    return Settings(
        run_dir=run_dir,
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "partitions": 4},
        store={"url": f"sqlite:///{run_dir / 'store.sqlite'}"},
        worker={
            "app_id": f"ctriage-site-it-{RUN}",
            "data_dir": run_dir / "worker",
            "metrics_port": 29140 + port_offset,
            "web_port": 26106 + port_offset,
            "hospital": HOSPITAL,
            "risk_model_path": site_models / "ventilation.ubj",
            "alert_threshold": 0.01,  # every study alerts: the alert must name the calibration
        },
    )


def test_worker_scores_and_alerts_with_the_recalibrated_version(
    settings: Settings,
    worker: WorkerProcess,
    site_models: Path,
    publish_fhir: Callable[..., None],
    pseudonymiser: Pseudonymiser,
) -> None:
    site = RiskModel.load(site_models / "ventilation.ubj")
    assert "+site." in site.version and site.site is not None
    raw = f"it-site-{RUN}"
    publish_fhir(HOSPITAL, {"resourceType": "Patient", "id": raw, "gender": "male",
                            "birthDate": "1950"})  # fmt: skip
    time.sleep(2)
    pseudonym = pseudonymiser.patient(raw)
    study_uid = f"1.2.826.0.3.{time.time_ns()}"
    quantification = Quantification(
        study_uid=study_uid,
        patient_pseudonym=pseudonym,
        biomarkers=dict.fromkeys(IMAGING_FEATURES, 12.0),
        lesion_model="test",
        lesion_model_version="1",
        ct_time=datetime.now(UTC).replace(microsecond=0).isoformat(),
        published_at=time.time(),
        hospital=HOSPITAL,
        timings=StageTimings(),
    )
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    producer.send(t.CT_QUANTIFICATION.name, key=pseudonym.encode(), value=quantification.to_bytes())
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(
        t.TRIAGE_RISK.name,
        t.TRIAGE_ALERTS.name,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    risks: list[RiskAssessment] = []
    alerts: list[Alert] = []
    deadline = time.monotonic() + 90
    try:
        while not (risks and alerts) and time.monotonic() < deadline:
            for partition, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    if partition.topic == t.TRIAGE_RISK.name:
                        risk = RiskAssessment.model_validate_json(record.value)
                        risks += [risk] if risk.study_uid == study_uid else []
                    else:
                        alert = Alert.model_validate_json(record.value)
                        alerts += [alert] if alert.study_uid == study_uid else []
    finally:
        consumer.close()
    assert risks, "the worker scored nothing"
    assert alerts, "no alert at threshold 0.01"
    assert {r.model_version for r in risks} == {site.version}
    assert {a.model_version for a in alerts} == {site.version}
