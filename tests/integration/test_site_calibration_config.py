"""A hospital's site calibration put in force on a running worker through ``triage.config``.

The worker loads the shipped model. ``ctriage thresholds set --calibration DIR`` (DIR written by
``ctriage risk recalibrate`` on 6,000 REAL held-out Mexico patients: ``site_models`` in the
conftest) publishes the hospital's new policy version with the layer and its audit record; the
worker scores the hospital's next study with ``<base>+site.<id>``, without a restart. A record
whose layer was fitted on another model is dead-lettered (``calibration_model_mismatch``) and
the previous policy stays; ``--no-calibration`` goes back to the model as loaded.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from stream_checks import ctriage, publish_quantifications, quantification, topic_values, wait_for

from streams import topics as t
from streams.demo import WorkerProcess
from streams.records import DeadLetter, RiskAssessment, ThresholdAudit, TriageConfig
from streams.settings import Settings
from triage.fhir.pseudonym import Pseudonymiser
from triage.risk.model import RiskModel
from triage.risk.scoring import MODELS_DIR

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
HOSPITAL = f"it-calib-{RUN}"


@pytest.fixture(scope="module")
def settings(kafka_broker, port_offset: int, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    run_dir = tmp_path_factory.mktemp("calibration")
    return Settings(
        run_dir=run_dir,
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "partitions": 4},
        store={"url": f"sqlite:///{run_dir / 'store.sqlite'}"},
        worker={
            "app_id": f"ctriage-calib-it-{RUN}",
            "data_dir": run_dir / "worker",
            "metrics_port": 29240 + port_offset,
            "web_port": 26216 + port_offset,
            "hospital": HOSPITAL,
            "alert_threshold": 0.01,
        },
    )


def _scored_version(settings: Settings, pseudonym: str, n: int) -> str:
    """Publish the patient's ``n``-th study, return the model version its risk record names."""
    study_uid = f"1.2.826.0.4.{time.time_ns()}.{n}"
    ct_time = datetime.now(UTC).replace(microsecond=0).isoformat()
    publish_quantifications(
        settings.kafka.bootstrap_servers, [quantification(study_uid, pseudonym, HOSPITAL, ct_time)]
    )
    consumer = KafkaConsumer(
        t.TRIAGE_RISK.name,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    risk = RiskAssessment.model_validate_json(record.value)
                    if risk.study_uid == study_uid:
                        return risk.model_version
    finally:
        consumer.close()
    raise AssertionError(f"study {study_uid} was not scored within 90 s")


def _worker_log_has(worker: WorkerProcess, text: str) -> Callable[[], bool]:
    return lambda: text in worker.log_path.read_text(errors="replace")


def test_a_site_calibration_set_by_an_administrator_reaches_the_running_worker(
    settings: Settings,
    worker: WorkerProcess,
    site_models: Path,
    publish_fhir: Callable[..., None],
    pseudonymiser: Pseudonymiser,
) -> None:
    base = RiskModel.load(MODELS_DIR / "ventilation.ubj")
    site = RiskModel.load(site_models / "ventilation.ubj")
    assert site.version.startswith(base.version + "+site.")
    raw = f"it-calib-{RUN}"
    publish_fhir(HOSPITAL, {"resourceType": "Patient", "id": raw, "gender": "female",
                            "birthDate": "1948"})  # fmt: skip
    pseudonym = pseudonymiser.patient(raw)
    assert _scored_version(settings, pseudonym, 1) == base.version  # no calibration yet

    done = ctriage(settings, "thresholds", "set", "--hospital", HOSPITAL, "--calibration",
                   str(site_models), "--reason", "site layer", "--by", "ana")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert site.version in done.stdout  # the levels table names the model in force
    wait_for(_worker_log_has(worker, f"risk model {site.version}"), 30, "the worker applying it")
    assert _scored_version(settings, pseudonym, 2) == site.version

    audits = [ThresholdAudit.model_validate_json(v) for v in
              topic_values(settings.kafka.bootstrap_servers, t.TRIAGE_AUDIT.name)]  # fmt: skip
    audit = [a for a in audits if a.hospital == HOSPITAL][-1]
    assert audit.changed_by == "ana" and audit.old_policy is not None
    assert "calibration" not in audit.old_policy
    assert audit.new_policy["calibration"]["base_version"] == base.version

    # a layer fitted on another model: every worker dead-letters it, the previous one stays
    in_force = [TriageConfig.model_validate_json(v) for v in
                topic_values(settings.kafka.bootstrap_servers, t.TRIAGE_CONFIG.name)]  # fmt: skip
    current = [c for c in in_force if c.hospital == HOSPITAL][-1]
    assert current.calibration is not None
    foreign = current.model_copy(update={
        "threshold_version": current.threshold_version + "-foreign",
        "calibration": {**current.calibration, "base_version": "0123456789ab"},
    })  # fmt: skip
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    producer.send(t.TRIAGE_CONFIG.name, key=HOSPITAL.encode(), value=foreign.to_bytes())
    producer.flush()
    producer.close()

    def dead_lettered() -> bool:
        letters = [DeadLetter.model_validate_json(v) for v in
                   topic_values(settings.kafka.bootstrap_servers, t.TRIAGE_CONFIG.dlq)]  # fmt: skip
        return any(
            d.reason_code == "calibration_model_mismatch" and d.key == HOSPITAL for d in letters
        )

    wait_for(dead_lettered, 30, "the foreign calibration dead-lettered")
    assert _scored_version(settings, pseudonym, 3) == site.version

    undone = ctriage(settings, "thresholds", "set", "--hospital", HOSPITAL, "--no-calibration",
                     "--reason", "back to the shipped model", "--by", "ana")  # fmt: skip
    assert undone.returncode == 0, undone.stdout + undone.stderr
    wait_for(_worker_log_has(worker, f"risk model {base.version}) by ana: back to"), 30,
             "the worker going back")  # fmt: skip
    assert _scored_version(settings, pseudonym, 4) == base.version


def test_the_command_refuses_a_folder_without_a_site_layer(settings: Settings) -> None:
    refused = ctriage(settings, "thresholds", "set", "--hospital", HOSPITAL, "--calibration",
                      str(MODELS_DIR), "--reason", "the shipped folder", "--by", "ana")  # fmt: skip
    assert refused.returncode == 2 and "invalid_calibration" in refused.stdout
