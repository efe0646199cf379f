"""Alerts exactly once when the worker dies at the worst moments (streams/agents/alert_log.py).

The worker is started with a failpoint (``CTRIAGE_WORKER__FAILPOINTS``) and SIGKILLs itself the
first time it gets there: right after an alert was written ahead (not sent yet), or right after
the alert was sent (not remembered yet: before the write-ahead log, the redelivered study sent
it a second time). Started again on the same state folder, it must leave exactly one record per
alert id on ``triage.alerts``, every study's alert present, and one stored row per alert id.
A real broker, a real worker, a real PostgreSQL; the risk stage is fed ``ct.quantification``
records directly (no Triton needed).
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
from stream_checks import (
    autopsy,
    publish_quantifications,
    quantification,
    start_group_at_end,
    stored_revisions,
    topic_values,
    wait_for,
    where_records_stand,
)

from streams import topics as t
from streams.demo import DemoError, WorkerProcess
from streams.records import Alert
from streams.settings import Settings

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
NOW = datetime.now(UTC).replace(microsecond=0)
STUDIES = 8


def _settings(base: Settings, point: str, failpoints: tuple[str, ...]) -> Settings:
    worker = base.worker.model_copy(
        update={
            "app_id": f"ctriage-alert-log-{point}-{RUN}",
            "failpoints": failpoints,
            "data_dir": base.run_dir / point / "worker",
        }  # fmt: skip
    )
    return base.model_copy(update={"worker": worker, "run_dir": base.run_dir / point})


@pytest.fixture(scope="module")
def base_settings(
    kafka_broker, postgres_server, port_offset: int, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return Settings(
        run_dir=tmp_path_factory.mktemp("alert-log"),
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "partitions": 4},
        store={"url": postgres_server.create_database(f"alert_log_it_{RUN}")},
        worker={
            "metrics_port": 29210 + port_offset,
            "web_port": 26176 + port_offset,
            "hospital": f"it-alert-log-{RUN}",
        },
    )


@pytest.mark.parametrize("point", ["alert_sent", "alert_written_ahead"])
def test_a_worker_killed_mid_alert_sends_each_alert_once(base_settings, point) -> None:
    settings = _settings(base_settings, point, (point,))
    start_group_at_end(settings.kafka.bootstrap_servers, settings.worker.app_id)
    doomed = WorkerProcess(settings)
    restarted = WorkerProcess(_settings(base_settings, point, ()))  # same group, same state
    try:
        doomed.start(timeout_s=180)
        root = f"2.25.{uuid.uuid4().int % 10**12}"
        batch = [  # 60 % of the lungs involved: each study raises an alert
            quantification(
                f"{root}.{i}",
                f"k1-alog-{point}-{RUN}-{i}",
                settings.worker.hospital,
                NOW.isoformat(),
                60.0,
            )  # fmt: skip
            for i in range(STUDIES)
        ]
        ours = {q.study_uid for q in batch}
        publish_quantifications(settings.kafka.bootstrap_servers, batch)
        assert doomed.process is not None
        assert doomed.process.wait(timeout=120) == -9, "the failpoint did not kill the worker"
        assert f"failpoint {point} reached" in doomed.log_path.read_text()
        restarted.start(timeout_s=180)
        # every risk row can be stored before the killed study comes back to the restarted
        # worker (its risk record was sent before the alert): wait for the settlement itself
        settled = "found on triage.alerts, not sent again" if point == "alert_sent" else "sent now"
        line = f"was written ahead and not remembered (a worker stopped): {settled}"
        try:
            wait_for(lambda: set(stored_revisions(settings.store.url, ours)) == ours, 120, "scored")
            wait_for(lambda: line in restarted.log_path.read_text(), 120, "the alert settled")
        except AssertionError as e:  # where the studies lie, and the restarted worker's stacks
            missing = ours - set(stored_revisions(settings.store.url, ours))
            where = where_records_stand(
                settings.kafka.bootstrap_servers, settings.worker.app_id,
                t.CT_QUANTIFICATION.name, missing or ours,
            )  # fmt: skip
            pid = restarted.process.pid if restarted.process else None
            kept = autopsy(pid, restarted.log_path, f"alert-log-{point}-{RUN}")
            raise AssertionError(f"{e}: {len(missing)} not stored\n{where}\n{kept}") from e

        def ours_alerts() -> list[Alert]:
            values = topic_values(settings.kafka.bootstrap_servers, t.TRIAGE_ALERTS.name)
            alerts = (Alert.model_validate_json(v) for v in values)
            return [a for a in alerts if a.study_uid in ours]

        # every study's alert is there (a study's row is stored before its alert is sent)
        wait_for(lambda: {a.study_uid for a in ours_alerts()} == ours, 60, "every alert")
        per_id = Counter(a.alert_id for a in ours_alerts())
        assert [i for i, n in per_id.items() if n > 1] == []  # and none twice
    except DemoError as e:
        pytest.fail(f"worker did not start ({e})")
    finally:
        doomed.stop()
        restarted.stop()
