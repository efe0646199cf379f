"""Crashes on a real Kafka broker and real workers (one node; the chaos suite does 3 nodes).

- a worker SIGKILLed mid-stream: its partitions are served again by the other worker within
  seconds (session timeout 6 s, not Faust's 60 s), every study ends with exactly one risk row in
  PostgreSQL, no alert id twice on ``triage.alerts``, nothing left running;
- a redelivered first score (what a crash before the offset commit brings back) after a
  re-score is sent as the revision the study reached, never as revision 0 again.

The risk stage is fed ``ct.quantification`` records directly: no Triton needed. The second test
runs in ``make test``; the first on demand (``make chaos``) until its remaining failure is found.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from stream_checks import (
    autopsy,
    descendants,
    publish_quantifications,
    quantification,
    start_group_at_end,
    stored_revisions,
    topic_values,
    wait_for,
    wait_settled,
    where_records_stand,
    worker_settings,
)

from streams import topics as t
from streams.demo import DemoError, WorkerProcess
from streams.records import Alert, Quantification, RiskAssessment
from streams.settings import Settings
from triage.fhir.pseudonym import Pseudonymiser

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
UID_ROOT = f"2.25.{uuid.uuid4().int % 10**12}"  # DICOM UIDs are digits and dots
HOSPITAL = f"it-crash-{RUN}"
NOW = datetime.now(UTC).replace(microsecond=0)
#: A crashed worker's partitions must be scored again within this (target 10 s; 2 busy cores).
RECOVERY_LIMIT_S = 25.0


@pytest.fixture(scope="module")
def settings(
    kafka_broker, postgres_server, port_offset: int, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    run_dir = tmp_path_factory.mktemp("crash")
    return Settings(
        run_dir=run_dir,
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "partitions": 4},
        store={"url": postgres_server.create_database(f"crash_it_{RUN}")},
        worker={
            "app_id": f"ctriage-crash-it-{RUN}",
            "data_dir": run_dir / "worker",
            "metrics_port": 29150 + port_offset,  # worker N: + N
            "web_port": 26116 + port_offset,
            "hospital": HOSPITAL,
        },
    )


@pytest.fixture
def workers(settings: Settings) -> Iterator[list[WorkerProcess]]:
    """Two real workers of one group (indexes 0 and 1: their own ports and state folders).

    Per test: the kill test leaves one of them dead (``make chaos`` runs both tests).
    """
    start_group_at_end(settings.kafka.bootstrap_servers, settings.worker.app_id)
    started = [WorkerProcess(worker_settings(settings, i)) for i in (0, 1)]
    try:
        for process in started:
            process.start(timeout_s=180)
    except (DemoError, OSError) as e:
        tails = [p.log_path.read_text()[-3000:] for p in started if p.log_path.exists()]
        for process in started:
            process.stop()
        pytest.fail(f"workers did not start ({e}):\n" + "\n".join(tails))
    yield started
    for process in started:
        process.stop()


def _quantification(pseudonym: str, study_uid: str) -> Quantification:
    return quantification(study_uid, pseudonym, HOSPITAL, NOW.isoformat())


def _publish(settings: Settings, records: list[Quantification]) -> None:
    publish_quantifications(settings.kafka.bootstrap_servers, records)


def _stored(settings: Settings, study_uids: set[str]) -> dict[str, int]:
    """Stored risk rows of ``study_uids``: study -> revision."""
    return stored_revisions(settings.store.url, study_uids)


# On demand (make chaos), not in make test, which keeps the one-worker kill-and-restart test
# (test_crash_restart.py) and stays short. It failed 5 of 7 runs with two busy loops beside until
# Faust's off-by-one commit check and its acknowledgement of records skipped at a rebalance were
# repaired (2026-12-05; 10 of 10 since, docs/fault-tolerance.md).
@pytest.mark.chaos
def test_a_killed_worker_loses_nothing_and_its_partitions_move_fast(settings, workers):
    batch = [_quantification(f"k1-crash-{RUN}-{i}", f"{UID_ROOT}.{i}") for i in range(40)]
    ours = {q.study_uid for q in batch}
    _publish(settings, batch)
    wait_for(lambda: len(_stored(settings, ours)) >= 12, 120, "30 % of the studies scored")
    # kill a member of a settled group (both workers serving partitions, no recovery running)
    wait_for(lambda: all(w.assigned_partitions() > 0 for w in workers), 120, "both assigned")
    wait_settled([w.log_path for w in workers])

    victim = workers[1]
    assert victim.process is not None
    children = descendants(victim.process.pid)
    victim.process.kill()  # SIGKILL: no leave-group, the broker must notice by itself
    killed_at = time.monotonic()
    victim.process.wait()
    # studies for every partition, published after the kill: scored only once the survivor
    # serves the dead worker's partitions too
    probes = [_quantification(f"k1-probe-{RUN}-{i}", f"{UID_ROOT}.9{i}") for i in range(16)]
    _publish(settings, probes)
    probe_uids = {q.study_uid for q in probes}
    try:
        wait_for(lambda: len(_stored(settings, probe_uids)) == len(probes), 120, "probes scored")
    except AssertionError as e:  # the survivor's stacks and where the missing probes lie
        survivor = workers[0]
        missing = probe_uids - set(_stored(settings, probe_uids))
        where = where_records_stand(
            settings.kafka.bootstrap_servers, settings.worker.app_id,
            t.CT_QUANTIFICATION.name, missing,
        )  # fmt: skip
        where += "\ntheir risk records:\n" + where_records_stand(
            settings.kafka.bootstrap_servers, settings.worker.app_id, t.TRIAGE_RISK.name, missing,
            lambda value: RiskAssessment.model_validate_json(value).study_uid,
        )  # fmt: skip
        pid = survivor.process.pid if survivor.process else None
        kept = autopsy(pid, survivor.log_path, f"crash-survivor-{RUN}")
        raise AssertionError(f"{e}: {len(missing)} of {len(probes)} probes\n{where}\n{kept}") from e
    recovery_s = time.monotonic() - killed_at
    wait_for(lambda: len(_stored(settings, ours)) == len(ours), 60, "every study scored")
    print(f"\nworker SIGKILL -> every partition scored again: {recovery_s:.1f}s")

    assert recovery_s <= RECOVERY_LIMIT_S, f"recovery took {recovery_s:.1f}s"
    assert set(_stored(settings, ours | probe_uids)) == ours | probe_uids  # none lost
    assert all(revision == 0 for revision in _stored(settings, ours).values())
    alerts = [
        Alert.model_validate_json(v)
        for v in topic_values(settings.kafka.bootstrap_servers, t.TRIAGE_ALERTS.name)
    ]
    alert_ids = [a.alert_id for a in alerts if a.study_uid in ours | probe_uids]
    assert len(alert_ids) == len(set(alert_ids)), "an alert id twice on triage.alerts"
    left = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert not left, f"processes of the killed worker still alive: {left}"


def test_a_redelivered_first_score_never_goes_back_to_revision_zero(
    settings, workers, publish_fhir, pseudonymiser: Pseudonymiser
):
    # a rebalance while the first score is in flight redelivers it (at least once): settle first
    wait_for(lambda: all(w.assigned_partitions() > 0 for w in workers), 120, "both assigned")
    wait_settled([w.log_path for w in workers])
    raw = f"crash-rescore-{RUN}"
    pseudonym = pseudonymiser.patient(raw)
    study = _quantification(pseudonym, f"{UID_ROOT}.777")
    publish_fhir(HOSPITAL, {"resourceType": "Patient", "id": raw, "gender": "male",
                            "birthDate": "1944"})  # fmt: skip
    _publish(settings, [study])
    wait_for(lambda: study.study_uid in _stored(settings, {study.study_uid}), 60, "first score")
    # late clinical data the model reads: the study is scored again as revision 1
    clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    verified = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
    condition = {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": clinical, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": verified, "code": "confirmed"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}],
                 "text": "Diabetes mellitus type 2"},
        "subject": {"reference": f"Patient/{raw}"},
        "recordedDate": "2000-01-01T00:00:00+00:00",
    }  # fmt: skip
    publish_fhir(HOSPITAL, condition)
    wait_for(lambda: _stored(settings, {study.study_uid}).get(study.study_uid) == 1, 60, "re-score")

    def revisions() -> list[int]:
        values = topic_values(settings.kafka.bootstrap_servers, t.TRIAGE_RISK.name)
        risks = [RiskAssessment.model_validate_json(v) for v in values]
        return [r.revision for r in risks if r.study_uid == study.study_uid]

    before = len(revisions())
    _publish(settings, [study])  # the redelivery a crash before the offset commit brings
    wait_for(lambda: len(revisions()) > before, 60, "the redelivered study scored")
    sent = revisions()
    # a duplicate of a score before the re-score is at-least-once delivery, allowed; once the
    # study reached revision 1, nothing may be sent as revision 0 again
    assert sent[0] == 0 and 1 in sent, sent
    assert set(sent[sent.index(1) :]) == {1}, f"revision 0 sent after the re-score: {sent}"
    assert len(sent) - sent.index(1) >= 2, sent  # the redelivery itself was sent, as 1
    assert _stored(settings, {study.study_uid})[study.study_uid] == 1
