"""Alert levels on a real Kafka broker: a running worker takes a policy change from the admin API
without a restart, raises one alert per study, escalates once when late clinical data lifts the
risk to a higher level, never repeats an alert on a replay (not even after a restart), emits
every alert as a FHIR R4 RiskAssessment, and the change's audit record reaches PostgreSQL.

The model is a black box here: a probe patient (its own hospital, default policy) measures the
probabilities of the same inputs first, and the tested hospital's levels are placed between them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from admin_api import ADMIN_TOKEN, AdminApiProcess, admin_tokens, request
from fhir.resources.R4B.riskassessment import RiskAssessment as FhirRiskAssessment
from kafka import KafkaConsumer, KafkaProducer
from sqlalchemy import select

from dashboards import store
from streams import topics as t
from streams.demo import WorkerProcess
from streams.records import Alert, DeadLetter, Quantification, RiskAssessment, StageTimings
from streams.settings import Settings
from triage.alerts.policy import RiskLevelValues, alert_id
from triage.fhir.features import IMAGING_FEATURES
from triage.fhir.pseudonym import Pseudonymiser

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
HOSPITAL = f"it-alerts-{RUN}"
PROBE_HOSPITAL = f"it-probe-{RUN}"
LEGACY_HOSPITAL = f"it-legacy-{RUN}"
NOW = datetime.now(UTC).replace(microsecond=0)
# late clinical data that should make any sensible model more worried, one resource at a time:
# comorbidities (the shipped model learnt them from the Mexico cohort), then an SpO2
LATE: list[tuple[str, str, str | float]] = [
    ("condition", "44054006", "Diabetes mellitus type 2"),
    ("condition", "38341003", "Hypertensive disorder, systemic arterial"),
    ("condition", "709044004", "Chronic kidney disease"),
    ("condition", "414916001", "Obesity"),
    ("observation", "59408-5", 82.0),  # SpO2 %
]


@pytest.fixture(scope="module")
def settings(
    kafka_broker, postgres_server, port_offset: int, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    run_dir = tmp_path_factory.mktemp("alerts")
    return Settings(
        run_dir=run_dir,
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "partitions": 4},
        store={"url": postgres_server.create_database(f"alerts_it_{RUN}")},
        worker={
            "app_id": f"ctriage-alerts-it-{RUN}",
            "data_dir": run_dir / "worker",
            "metrics_port": 29120 + port_offset,
            "web_port": 26086 + port_offset,
            "hospital": HOSPITAL,
        },
        admin={"port": 28092 + port_offset, "tokens": admin_tokens(), "hospitals": [HOSPITAL]},
    )


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[AdminApiProcess]:
    server = AdminApiProcess(settings, settings.run_dir / "api.log")
    try:
        server.start()
    except RuntimeError as e:
        server.stop()
        pytest.fail(str(e))
    yield server
    server.stop()


class Topics:
    """A group-less reader of some topics from their beginning, kept open across polls."""

    def __init__(self, settings: Settings, *names: str) -> None:
        self.consumer = KafkaConsumer(
            *names,
            bootstrap_servers=settings.kafka.bootstrap_servers,
            auto_offset_reset="earliest",
            group_id=None,
        )
        self.seen: dict[str, list[bytes]] = {name: [] for name in names}

    def until(self, done: Callable[[], bool], timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            for partition, records in self.consumer.poll(timeout_ms=500).items():
                self.seen[partition.topic] += [r.value for r in records]

    def close(self) -> None:
        self.consumer.close()


def send(settings: Settings, topic: str, key: str, value: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    producer.send(topic, key=key.encode(), value=value)
    producer.flush()
    producer.close()


def late_resource(patient: str, kind: str, code: str, value: str | float) -> dict[str, Any]:
    subject = {"reference": f"Patient/{patient}"}
    if kind == "condition":
        return {
            "resourceType": "Condition",
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                    }
                ]
            },
            "verificationStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                        "code": "confirmed",
                    }
                ]
            },
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}], "text": value},
            "subject": subject,
            "recordedDate": (NOW - timedelta(days=30)).isoformat(),
        }
    return {
        "resourceType": "Observation",
        "status": "final",
        "subject": subject,
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "effectiveDateTime": (NOW - timedelta(hours=1)).isoformat(),
        "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": "%"},
    }


def quantification(pseudonym: str, study_uid: str, hospital: str) -> Quantification:
    return Quantification(
        study_uid=study_uid,
        patient_pseudonym=pseudonym,
        biomarkers=dict.fromkeys(IMAGING_FEATURES, 10.0),
        lesion_model="test",
        lesion_model_version="1",
        ct_time=NOW.isoformat(),
        published_at=time.time(),
        hospital=hospital,
        timings=StageTimings(),
    )


def risks_of(reader: Topics, study_uid: str) -> list[RiskAssessment]:
    out = [RiskAssessment.model_validate_json(v) for v in reader.seen[t.TRIAGE_RISK.name]]
    return [r for r in out if r.study_uid == study_uid]


def alerts_of(reader: Topics, study_uid: str) -> list[Alert]:
    out = [Alert.model_validate_json(v) for v in reader.seen[t.TRIAGE_ALERTS.name]]
    return [a for a in out if a.study_uid == study_uid]


def patient_with_late_data(
    settings: Settings,
    reader: Topics,
    hospital: str,
    name: str,
    publish_fhir: Callable[..., None],
    pseudonymiser: Pseudonymiser,
) -> tuple[str, list[RiskAssessment]]:
    """A patient scored on arrival, then re-scored after each late result; its risk records."""
    raw = f"it-{name}-{RUN}"
    pseudonym = pseudonymiser.patient(raw)
    publish_fhir(
        hospital,
        {"resourceType": "Patient", "id": raw, "gender": "male", "birthDate": "1944"},
    )
    time.sleep(2)  # the Patient is folded before the CT is scored
    study_uid = f"1.2.826.0.1.{time.time_ns()}"
    send(
        settings,
        t.CT_QUANTIFICATION.name,
        pseudonym,
        quantification(pseudonym, study_uid, hospital).to_bytes(),
    )
    reader.until(lambda: len(risks_of(reader, study_uid)) >= 1)
    for kind, code, value in LATE:
        before = len(risks_of(reader, study_uid))
        publish_fhir(hospital, late_resource(raw, kind, code, value))
        reader.until(lambda before=before: len(risks_of(reader, study_uid)) > before, 30)
    return study_uid, risks_of(reader, study_uid)


def expected_alert_levels(risks: list[RiskAssessment]) -> list[str]:
    """Initial alert at the first alerting score, then one per higher level reached."""
    rank = {str(level): level.rank for level in RiskLevelValues}
    raised: list[str] = []
    for risk in sorted(risks, key=lambda r: r.revision):
        if risk.alert and (not raised or rank[risk.level] > rank[raised[-1]]):
            raised.append(risk.level)
    return raised


def test_change_applies_without_restart_and_alerts_escalate_once(
    settings: Settings,
    worker: WorkerProcess,
    api: AdminApiProcess,
    publish_fhir: Callable[..., None],
    pseudonymiser: Pseudonymiser,
) -> None:
    reader = Topics(
        settings,
        t.TRIAGE_RISK.name,
        t.TRIAGE_ALERTS.name,
        t.TRIAGE_ALERTS_FHIR.name,
        t.TRIAGE_CONFIG.dlq,
    )
    try:
        # 1. probe: what the model makes of these inputs (default policy, its own hospital)
        _, probe = patient_with_late_data(
            settings, reader, PROBE_HOSPITAL, "probe", publish_fhir, pseudonymiser
        )
        probe.sort(key=lambda r: r.revision)
        p0, p_max = probe[0].probability, max(r.probability for r in probe[1:])
        assert len(probe) == 1 + len(LATE), [r.revision for r in probe]
        assert p_max > p0 * 1.05 + 0.005, f"late data did not raise the risk: {probe}"

        # 2. the administrator places the levels between those probabilities
        levels = {"moderate": p0 * 0.5, "high": p0 * 0.95, "critical": (p0 + p_max) / 2}
        changed_at = time.monotonic()
        status, body = request(
            api.base_url,
            "POST",
            f"/v1/policies/{HOSPITAL}/changes",
            token=ADMIN_TOKEN,
            body={"levels": levels, "reason": "escalation test"},
        )
        assert status == 201, body
        version = body["policy"]["threshold_version"]

        # 3. the running worker applies it: a canary study scored under the new version
        canary = pseudonymiser.patient(f"it-canary-{RUN}")
        applied_after_s = None
        tries = 0
        while tries < 120:
            tries += 1
            uid = f"1.2.826.0.2.{time.time_ns()}"
            send(
                settings,
                t.CT_QUANTIFICATION.name,
                canary,
                quantification(canary, uid, HOSPITAL).to_bytes(),
            )
            reader.until(lambda uid=uid: bool(risks_of(reader, uid)), 30)
            if risks_of(reader, uid)[0].threshold_version == version:
                applied_after_s = time.monotonic() - changed_at
                break
        assert applied_after_s is not None, f"worker never applied {version}"
        print(f"policy change -> first score under it: {applied_after_s:.2f} s ({tries} tries)")

        # 4. the same patient story under the new levels: one alert, then one escalation
        study_uid, risks = patient_with_late_data(
            settings, reader, HOSPITAL, "patient", publish_fhir, pseudonymiser
        )
        assert {r.threshold_version for r in risks} == {version}
        expected = expected_alert_levels(risks)
        assert expected[:1] == ["high"] and "critical" in expected, [
            (r.revision, r.probability, r.level) for r in risks
        ]
        reader.until(lambda: len(alerts_of(reader, study_uid)) >= len(expected), 30)
        alerts = alerts_of(reader, study_uid)
        assert [a.level for a in alerts] == expected
        first, *escalations = alerts
        model = first.model_version
        assert first.kind == "initial"
        assert first.alert_id == alert_id(study_uid, model, version)
        for before, alert in zip(alerts, escalations, strict=False):
            assert alert.kind == "escalation" and alert.escalated_from == before.level
            assert alert.previous_alert_id == before.alert_id
            assert alert.alert_id == alert_id(study_uid, model, version, alert.level)
        for alert in alerts:  # what a physician reads
            assert alert.patient_pseudonym.startswith("k1-") and alert.top_features
            assert alert.threshold_version == version and alert.completeness_note
            assert alert.level_threshold == pytest.approx(levels[alert.level])
        assert alerts[-1].completeness_note != "no clinical record yet"

        # 5. each alert is also a FHIR R4 RiskAssessment, id = alert id
        def fhir() -> list[dict[str, Any]]:
            ours = {a.alert_id for a in alerts}
            found = [json.loads(v) for v in reader.seen[t.TRIAGE_ALERTS_FHIR.name]]
            return [r for r in found if r["id"] in ours]

        reader.until(lambda: len(fhir()) >= len(alerts), 30)
        resources = fhir()
        assert sorted(r["id"] for r in resources) == sorted(a.alert_id for a in alerts)
        for resource in resources:
            FhirRiskAssessment.model_validate(resource)
            assert resource["basis"][0]["identifier"]["value"] == f"urn:oid:{study_uid}"

        # 6. a replay (the same quantification again), also after a restart, alerts nothing new
        pseudonym = first.patient_pseudonym
        redelivery = quantification(pseudonym, study_uid, HOSPITAL).to_bytes()
        for restart in (False, True):
            if restart:
                worker.stop()
                worker.start(timeout_s=180)
            scored = len(risks_of(reader, study_uid))
            send(settings, t.CT_QUANTIFICATION.name, pseudonym, redelivery)
            reader.until(lambda scored=scored: len(risks_of(reader, study_uid)) > scored, 60)
            assert len(risks_of(reader, study_uid)) > scored  # it was scored again
            reader.until(lambda: False, 5)
            assert len(alerts_of(reader, study_uid)) == len(expected)
            assert len(fhir()) == len(alerts)
    finally:
        reader.close()

    # 7. the audit record of the change and the alerts are in the PostgreSQL store (sinks)
    engine = store.make_engine(settings.store.url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            audits = conn.execute(
                select(store.threshold_audit).where(store.threshold_audit.c.hospital == HOSPITAL)
            ).fetchall()
            stored = conn.execute(
                select(store.alerts).where(store.alerts.c.study_uid == study_uid)
            ).fetchall()
        if audits and len(stored) == len(alerts):
            break
        time.sleep(1)
    engine.dispose()
    assert [(a.changed_by, a.old_version, a.new_version) for a in audits] == [
        ("ana", "t1", version)
    ]
    assert audits[0].audit_event["resourceType"] == "AuditEvent"
    assert sorted(r.kind for r in stored) == sorted(a.kind for a in alerts)


def test_old_single_threshold_records_apply_and_bad_levels_are_dead_lettered(
    settings: Settings, worker: WorkerProcess, pseudonymiser: Pseudonymiser
) -> None:
    reader = Topics(settings, t.TRIAGE_RISK.name, t.TRIAGE_CONFIG.dlq)
    try:
        legacy = {
            "hospital": LEGACY_HOSPITAL,
            "threshold": 0.3,
            "threshold_version": "legacy-7",
            "changed_by": "an older ctriage",
            "reason": "written before named levels",
            "changed_at": time.time(),
        }
        send(settings, t.TRIAGE_CONFIG.name, LEGACY_HOSPITAL, json.dumps(legacy).encode())
        disordered = {
            **legacy,
            "threshold": None,
            "threshold_version": "bad-1",
            "levels": {"moderate": 0.6, "high": 0.4, "critical": 0.9},
        }
        send(settings, t.TRIAGE_CONFIG.name, LEGACY_HOSPITAL, json.dumps(disordered).encode())

        def letters() -> list[DeadLetter]:
            found = [DeadLetter.model_validate_json(v) for v in reader.seen[t.TRIAGE_CONFIG.dlq]]
            return [d for d in found if d.key == LEGACY_HOSPITAL]

        reader.until(lambda: bool(letters()), 60)
        assert [d.reason_code for d in letters()] == ["levels_not_ordered"]
        # the old record's policy stays in force: high is its threshold
        canary = pseudonymiser.patient(f"it-legacy-canary-{RUN}")
        uid = f"1.2.826.0.3.{time.time_ns()}"
        send(
            settings,
            t.CT_QUANTIFICATION.name,
            canary,
            quantification(canary, uid, LEGACY_HOSPITAL).to_bytes(),
        )
        reader.until(lambda: bool(risks_of(reader, uid)), 60)
        risk = risks_of(reader, uid)[0]
        assert (risk.threshold_version, risk.threshold) == ("legacy-7", 0.3)
    finally:
        reader.close()
