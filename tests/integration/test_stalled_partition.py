"""A partition Faust stops serving outside a rebalance is noticed and fetched again.

The 1,000-study chaos runs stalled twice so (2026-12-06), the worker idle, its fetch loop live,
nothing logged, for 5 minutes: once ``ct.quantification-1`` with 17 records waiting, once a
partition the group had never committed, sought back once and then silent. The worker here
plays, once, a state that leaves a partition so (``CTRIAGE_WORKER__FAILPOINTS``,
streams/failpoints.py): ``unfetch_partition`` (the partition of its first scored study out of
Faust's fetch set) and ``read_offset_ahead`` (Faust's read offset far ahead, so Faust drops what
it fetches of the partition). Studies published to that partition afterwards must still be
scored, and the consumer says what it found (streams/consumer_watchdogs.py: ``_find_unfetched``;
records below Faust's read offset are seen as they are dropped, at the end of the batch, before
the last-resort ``_find_stalled`` would act). Without the watchdogs they wait for ever
(measured: 6 of 6 not stored within 60 s).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from kafka.partitioner.default import murmur2
from stream_checks import (
    autopsy,
    publish_quantifications,
    quantification,
    start_group_at_end,
    stored_revisions,
    wait_for,
    where_records_stand,
)

from streams import topics as t
from streams.demo import DemoError, WorkerProcess
from streams.settings import Settings

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
NOW = datetime.now(UTC).replace(microsecond=0).isoformat()
PARTITIONS = 4


def _partition(key: str) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


def _on_partition(partition: int, n: int, tag: str) -> list[str]:
    keys = (f"k1-unfetched-{RUN}-{tag}-{i}" for i in range(10_000))
    return [k for k in keys if _partition(k) == partition][:n]


FAULTS = {
    # the fault, and what the consumer must say when it brings the partition back
    "unfetch_partition": f"of {t.CT_QUANTIFICATION.name}-2 wait and Faust was not fetching the "
    "partition (paused: True, buffered: False): fetching it again",
    "read_offset_ahead": f"records of {t.CT_QUANTIFICATION.name}-2 were dropped by Faust from ",
}


@pytest.fixture(params=sorted(FAULTS))
def fault(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(kafka_broker, postgres_server, port_offset: int, tmp_path, fault: str) -> Settings:
    return Settings(
        run_dir=tmp_path,
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "partitions": PARTITIONS},
        store={"url": postgres_server.create_database(f"stalled_it_{fault}_{RUN}")},
        worker={
            "app_id": f"ctriage-stalled-{fault}-{RUN}",
            "metrics_port": 29220 + port_offset,
            "web_port": 26186 + port_offset,
            "hospital": f"it-stalled-{RUN}",
            "data_dir": tmp_path / "worker",
            "failpoints": (fault,),
        },
    )


def test_a_partition_left_unserved_is_fetched_again(settings, fault: str) -> None:
    start_group_at_end(settings.kafka.bootstrap_servers, settings.worker.app_id)
    worker = WorkerProcess(settings)
    root = f"2.25.{uuid.uuid4().int % 10**12}"
    hospital = settings.worker.hospital
    first = quantification(f"{root}.0", _on_partition(2, 1, f"{fault}-a")[0], hospital, NOW)
    later = [
        quantification(f"{root}.{i + 1}", key, settings.worker.hospital, NOW)
        for i, key in enumerate(_on_partition(2, 6, f"{fault}-b"))
    ]
    ours = {q.study_uid for q in later}
    try:
        worker.start(timeout_s=180)
        publish_quantifications(settings.kafka.bootstrap_servers, [first])
        wait_for(lambda: stored_revisions(settings.store.url, {first.study_uid}), 60, "first")
        log = worker.log_path
        wait_for(lambda: f"fault {fault} reached" in log.read_text(), 30, "the fault")
        publish_quantifications(settings.kafka.bootstrap_servers, later)  # to the paused one
        try:
            wait_for(lambda: set(stored_revisions(settings.store.url, ours)) == ours, 90, "all")
        except AssertionError as e:
            missing = ours - set(stored_revisions(settings.store.url, ours))
            where = where_records_stand(
                settings.kafka.bootstrap_servers, settings.worker.app_id,
                t.CT_QUANTIFICATION.name, missing,
            )  # fmt: skip
            pid = worker.process.pid if worker.process else None
            kept = autopsy(pid, log, f"stalled-{fault}-{RUN}")
            raise AssertionError(f"{e}: {len(missing)} not stored\n{where}\n{kept}") from e
        assert FAULTS[fault] in log.read_text()
    except DemoError as e:
        pytest.fail(f"worker did not start ({e})")
    finally:
        worker.stop()
