"""A site-recalibrated model on a running worker: by its setting, and per hospital by policy.

The sites' outcomes are REAL: held-out Mexico patients with their intubation outcome
(``ctriage risk recalibrate`` on 6,000 of them writes ``site_models``, on the last 4,593
``other_site_models``: fixtures in the conftest). The worker is pointed at ``site_models`` by
its setting ``CTRIAGE_WORKER__RISK_MODEL_PATH`` (handed to the worker process as environment):
every risk record and alert carries that version ``<base>+site.<id>``. Then an administrator
puts the other layer in force for the hospital with ``ctriage thresholds set --calibration``
(a ``triage.config`` version with its audit record): the next study is scored with
``<base>+site.<other id>`` without a restart (the layer replaces the loaded one, never stacks);
a record whose layer was fitted on another model is dead-lettered
(``calibration_model_mismatch``) and the previous policy stays; ``--no-calibration`` goes back
to the model as loaded.
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
from streams.records import Alert, DeadLetter, RiskAssessment, ThresholdAudit, TriageConfig
from streams.settings import Settings
from triage.fhir.pseudonym import Pseudonymiser
from triage.risk.model import RiskModel
from triage.risk.scoring import MODELS_DIR

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


@pytest.fixture(scope="module")
def pseudonym(
    worker: WorkerProcess, publish_fhir: Callable[..., None], pseudonymiser: Pseudonymiser
) -> str:
    """A patient of the hospital with a clinical record (the worker is running)."""
    raw = f"it-site-{RUN}"
    publish_fhir(HOSPITAL, {"resourceType": "Patient", "id": raw, "gender": "male",
                            "birthDate": "1950"})  # fmt: skip
    return pseudonymiser.patient(raw)


def _scored(settings: Settings, pseudonym: str) -> tuple[list[RiskAssessment], list[Alert]]:
    """Publish a study of the patient; its risk records and alerts (90 s at most)."""
    study_uid = f"1.2.826.0.3.{time.time_ns()}"
    ct_time = datetime.now(UTC).replace(microsecond=0).isoformat()
    publish_quantifications(
        settings.kafka.bootstrap_servers, [quantification(study_uid, pseudonym, HOSPITAL, ct_time)]
    )
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
    return risks, alerts


def _version(settings: Settings, pseudonym: str) -> str:
    risks, alerts = _scored(settings, pseudonym)
    versions = {r.model_version for r in risks} | {a.model_version for a in alerts}
    assert len(versions) == 1, versions
    return versions.pop()


def ours(bootstrap_servers: str, topic: str) -> list[bytes]:
    """This module's records on ``topic`` (other tests put deliberately invalid ones there)."""
    return [v for v in topic_values(bootstrap_servers, topic) if HOSPITAL.encode() in v]


def _worker_log_has(worker: WorkerProcess, text: str) -> Callable[[], bool]:
    return lambda: text in worker.log_path.read_text(errors="replace")


def test_worker_scores_and_alerts_with_the_recalibrated_version(
    settings: Settings, pseudonym: str, site_models: Path
) -> None:
    site = RiskModel.load(site_models / "ventilation.ubj")
    assert "+site." in site.version and site.site is not None
    assert _version(settings, pseudonym) == site.version


def test_a_hospital_calibration_set_by_an_administrator_reaches_the_running_worker(
    settings: Settings, worker: WorkerProcess, pseudonym: str, site_models: Path,
    other_site_models: Path,
) -> None:  # fmt: skip
    base = RiskModel.load(MODELS_DIR / "ventilation.ubj")
    loaded = RiskModel.load(site_models / "ventilation.ubj")
    other = RiskModel.load(other_site_models / "ventilation.ubj")
    assert other.version.startswith(base.version + "+site.") and other.version != loaded.version

    done = ctriage(settings, "thresholds", "set", "--hospital", HOSPITAL, "--calibration",
                   str(other_site_models), "--reason", "our layer", "--by", "ana")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert other.version in done.stdout  # the levels table names the model in force
    wait_for(_worker_log_has(worker, f"risk model {other.version})"), 30, "the worker applying")
    assert _version(settings, pseudonym) == other.version  # replaces the loaded layer

    bootstrap = settings.kafka.bootstrap_servers
    audits = [ThresholdAudit.model_validate_json(v) for v in ours(bootstrap, t.TRIAGE_AUDIT.name)]
    audit = [a for a in audits if a.hospital == HOSPITAL][-1]
    assert audit.changed_by == "ana" and "calibration" not in (audit.old_policy or {})
    assert audit.new_policy["calibration"]["base_version"] == base.version

    # a layer fitted on another model: the worker dead-letters it, the previous one stays
    configs = [TriageConfig.model_validate_json(v) for v in
               ours(bootstrap, t.TRIAGE_CONFIG.name)]  # fmt: skip
    current = [c for c in configs if c.hospital == HOSPITAL][-1]
    assert current.calibration is not None
    foreign = current.model_copy(update={
        "threshold_version": current.threshold_version + "-foreign",
        "calibration": {**current.calibration, "base_version": "0123456789ab"},
    })  # fmt: skip
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer.send(t.TRIAGE_CONFIG.name, key=HOSPITAL.encode(), value=foreign.to_bytes())
    producer.flush()
    producer.close()

    def dead_lettered() -> bool:
        letters = [DeadLetter.model_validate_json(v) for v in
                   ours(bootstrap, t.TRIAGE_CONFIG.dlq)]  # fmt: skip
        return any(
            d.reason_code == "calibration_model_mismatch" and d.key == HOSPITAL for d in letters
        )

    wait_for(dead_lettered, 30, "the foreign calibration dead-lettered")
    assert _version(settings, pseudonym) == other.version

    undone = ctriage(settings, "thresholds", "set", "--hospital", HOSPITAL, "--no-calibration",
                     "--reason", "back to our folder", "--by", "ana")  # fmt: skip
    assert undone.returncode == 0, undone.stdout + undone.stderr
    wait_for(_worker_log_has(worker, f"risk model {loaded.version}) by ana: back to"), 30,
             "the worker going back")  # fmt: skip
    assert _version(settings, pseudonym) == loaded.version


def test_the_command_refuses_a_folder_without_a_site_layer(settings: Settings) -> None:
    refused = ctriage(settings, "thresholds", "set", "--hospital", HOSPITAL, "--calibration",
                      str(MODELS_DIR), "--reason", "the shipped folder", "--by", "ana")  # fmt: skip
    assert refused.returncode == 2 and "invalid_calibration" in refused.stdout
