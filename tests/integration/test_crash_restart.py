"""A worker SIGKILLed mid-stream on one node and started again (``make test``).

The issue's regression guard (issue 15, "Done when"): a worker killed by SIGKILL while it scores
a stream of studies, then started again on the same state folder, as a supervisor restarts it.
Every study must end with a risk row in PostgreSQL at revision 0 (none lost, none stale), the
store must hold one alert per alert id, ``triage.alerts`` no alert id twice (alerts are written
ahead and settled after a crash: streams/agents/alert_log.py; ``test_alert_log.py`` kills the
worker at the two worst points on purpose), no process of the killed worker may be left, and the
time from the kill until rows flow again is printed.

The two-worker test (a survivor takes the partitions over) is ``test_crash.py``, on demand.
The risk stage is fed ``ct.quantification`` records directly: no Triton needed.

The kill test was on demand (``chaos``) for part of 2026-12-05: it failed 2 of 5 full clean-clone
runs with one study committed past and never stored. The cause was Faust's commit check, off by
one, passing exactly one record no agent processed, and acknowledgements of records skipped
while a rebalance began (both repaired in ``streams/faust_consumer.py``; docs/fault-tolerance.md),
so it is back in ``make test``. Its failure explanation (where the missing records lie, the
worker's stacks) and the worker's stack dump are tested here too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
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
)

from dashboards import store
from streams import topics as t
from streams.demo import DemoError, WorkerProcess
from streams.records import Alert, Quantification, RiskAssessment
from streams.settings import Settings

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
UID_ROOT = f"2.25.{uuid.uuid4().int % 10**12}"
HOSPITAL = f"it-restart-{RUN}"
NOW = datetime.now(UTC).replace(microsecond=0)
STUDIES = 60


@pytest.fixture(scope="module")
def settings(
    kafka_broker, postgres_server, port_offset: int, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    run_dir = tmp_path_factory.mktemp("restart")
    return Settings(
        run_dir=run_dir,
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "partitions": 4},
        store={"url": postgres_server.create_database(f"restart_it_{RUN}")},
        worker={
            "app_id": f"ctriage-restart-it-{RUN}",
            "data_dir": run_dir / "worker",
            "metrics_port": 29180 + port_offset,
            "web_port": 26146 + port_offset,
            "hospital": HOSPITAL,
        },
    )


@pytest.fixture
def worker(settings: Settings) -> Iterator[list[WorkerProcess]]:
    """The worker as started, then as restarted (the test appends the second start)."""
    start_group_at_end(settings.kafka.bootstrap_servers, settings.worker.app_id)
    started = [WorkerProcess(settings)]
    try:
        started[0].start(timeout_s=180)
    except (DemoError, OSError) as e:
        started[0].stop()
        pytest.fail(f"worker did not start ({e}):\n{started[0].log_path.read_text()[-3000:]}")
    yield started
    for process in started:
        process.stop()


def _quantification(i: int) -> Quantification:
    # above the alert level for a share of the studies, so alerts are sent during the kill
    burden = 5.0 + (i % 4) * 15.0
    pseudonym = f"k1-restart-{RUN}-{i}"
    return quantification(f"{UID_ROOT}.{i}", pseudonym, HOSPITAL, NOW.isoformat(), burden)


def _publish(settings: Settings, records: list[Quantification]) -> None:
    publish_quantifications(settings.kafka.bootstrap_servers, records)


def _stored_alerts(settings: Settings, study_uids: set[str]) -> tuple[int, int]:
    """(alert rows, distinct alert ids) of ``study_uids`` in the store."""
    engine = store.make_engine(settings.store.url)
    try:
        with engine.connect() as conn:
            ours = store.alerts.c.study_uid.in_(study_uids)
            rows = conn.execute(select(func.count()).where(ours)).scalar_one()
            ids = conn.execute(
                select(func.count(store.alerts.c.alert_id.distinct())).where(ours)
            ).scalar_one()
    finally:
        engine.dispose()
    return int(rows), int(ids)


def _stored_alert_ids(settings: Settings, study_uids: set[str]) -> set[str]:
    engine = store.make_engine(settings.store.url)
    try:
        with engine.connect() as conn:
            ours = store.alerts.c.study_uid.in_(study_uids)
            return set(conn.execute(select(store.alerts.c.alert_id).where(ours)).scalars())
    finally:
        engine.dispose()


def _explained(
    error: AssertionError,
    summary: str,
    settings: Settings,
    restarted: WorkerProcess,
    topic: str,
    missing: set[str],
    id_of: Callable[[bytes], str] | None = None,
) -> AssertionError:
    """``error`` with where the missing records lie on ``topic`` and the worker's stacks."""
    pid = restarted.process.pid if restarted.process else None
    where = where_records_stand(
        settings.kafka.bootstrap_servers, settings.worker.app_id, topic, missing, id_of
    )
    kept = autopsy(pid, restarted.log_path, f"crash-restart-{topic}-{RUN}")
    return AssertionError(f"{error}: {summary}\n{where}\n{kept}")


def test_a_worker_killed_mid_stream_and_restarted_loses_nothing(settings, worker) -> None:
    wait_for(lambda: worker[0].assigned_partitions() > 0, 120, "partitions assigned")
    wait_settled([worker[0].log_path])
    batch = [_quantification(i) for i in range(STUDIES)]
    ours = {q.study_uid for q in batch}
    _publish(settings, batch[: STUDIES // 2])
    wait_for(lambda: len(stored_revisions(settings.store.url, ours)) >= 12, 120, "20 % scored")

    victim = worker[0]
    assert victim.process is not None
    children = descendants(victim.process.pid)
    _publish(settings, batch[STUDIES // 2 :])  # in flight while the worker dies
    victim.process.kill()  # SIGKILL: no commit, no leave-group
    killed_at = time.monotonic()
    victim.process.wait()
    before = len(stored_revisions(settings.store.url, ours))

    restarted = WorkerProcess(settings)  # same index, ports and state folder
    worker.append(restarted)
    restarted.start(timeout_s=180)
    wait_for(
        lambda: len(stored_revisions(settings.store.url, ours)) > before or before == STUDIES,
        120,
        "rows flowing again",
    )
    recovery_s = time.monotonic() - killed_at
    try:
        wait_for(
            lambda: len(stored_revisions(settings.store.url, ours)) == STUDIES, 120, "all scored"
        )
    except AssertionError as e:
        missing = ours - set(stored_revisions(settings.store.url, ours))
        summary = f"{len(missing)} of {STUDIES} not stored ({before} before the kill)"
        on_risk_topic = where_records_stand(
            settings.kafka.bootstrap_servers,
            settings.worker.app_id,
            t.TRIAGE_RISK.name,
            missing,
            lambda value: RiskAssessment.model_validate_json(value).study_uid,
        )
        summary += f"\ntheir risk records:\n{on_risk_topic}"
        raise _explained(e, summary, settings, restarted, t.CT_QUANTIFICATION.name, missing) from e

    stored = stored_revisions(settings.store.url, ours)
    assert set(stored) == ours  # none lost
    assert set(stored.values()) == {0}  # nothing re-scored, nothing stale
    alerts = [
        Alert.model_validate_json(v)
        for v in topic_values(settings.kafka.bootstrap_servers, t.TRIAGE_ALERTS.name)
    ]
    alert_ids = [a.alert_id for a in alerts if a.study_uid in ours]
    assert alert_ids, "the batch raises alerts (else the alert checks below check nothing)"
    try:
        wait_for(
            lambda: _stored_alerts(settings, ours)[1] == len(set(alert_ids)), 60, "alerts stored"
        )
    except AssertionError as e:
        missing = set(alert_ids) - _stored_alert_ids(settings, ours)
        summary = f"{len(missing)} of {len(set(alert_ids))} alert ids not stored"
        raise _explained(
            e,
            summary,
            settings,
            restarted,
            t.TRIAGE_ALERTS.name,
            missing,
            lambda value: Alert.model_validate_json(value).alert_id,
        ) from e
    rows, distinct = _stored_alerts(settings, ours)
    assert rows == distinct == len(set(alert_ids))  # the store: one row per alert id
    assert len(alert_ids) == len(set(alert_ids)), "an alert id twice on triage.alerts"
    left = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert not left, f"processes of the killed worker still alive: {left}"
    print(
        f"\nworker SIGKILL at {before}/{STUDIES} stored -> restarted, rows again after "
        f"{recovery_s:.1f}s; alerts {len(set(alert_ids))}, sent twice on the topic: "
        f"{len(alert_ids) - len(set(alert_ids))}"
    )


def test_a_worker_dumps_its_stacks_on_sigquit_and_runs_on(settings, worker) -> None:
    """What the test above keeps when it fails: SIGQUIT writes every thread's stack to the log."""
    process = worker[0].process
    assert process is not None
    before = worker[0].log_path.stat().st_size  # the module's workers share one log
    assert "kept in" in autopsy(process.pid, worker[0].log_path, f"sigquit-{RUN}")
    log = worker[0].log_path.read_bytes()[before:].decode(errors="replace")
    # faulthandler's dump: "Thread 0x... (most recent call first):" (or "Current thread ...")
    assert "thread 0x" in log.lower() and "(most recent call first):" in log
    assert "Stack for <Task" in log  # Faust's SIGUSR1 list of the event loop's tasks
    assert process.poll() is None  # and the worker runs on


def test_where_records_stand_places_records_against_the_group(settings, worker) -> None:
    """The other half of a failure's explanation: partition and offset vs committed offset."""
    wait_for(lambda: worker[0].assigned_partitions() > 0, 120, "partitions assigned")
    probe = _quantification(STUDIES + 1)
    _publish(settings, [probe])
    text = where_records_stand(
        settings.kafka.bootstrap_servers,
        settings.worker.app_id,
        t.CT_QUANTIFICATION.name,
        {probe.study_uid, "2.25.0"},
    )
    assert text.count(f"{t.CT_QUANTIFICATION.name}[") == settings.kafka.partitions
    assert "missing 2.25.0 at no offset" in text
    assert f"missing {probe.study_uid} at [(" in text  # (partition, offset) where it lies
