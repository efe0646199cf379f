"""A broker outage under a running worker: its log stays readable and says when Kafka is back.

The worker's own single broker (not the session's) is SIGKILLed for 20 s and started again on
the same data. Before the fix the worker wrote about 100 ERROR lines a second and nothing on
recovery; now each repeated client line passes once per 30 s and one line names the recovery.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from stream_checks import wait_for

from deploy.kafka import KafkaBroker
from streams.demo import WorkerProcess
from streams.kafka_health import broker_answers
from streams.settings import Settings, load_settings

pytestmark = pytest.mark.chaos

OUTAGE_S = 20.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, port_offset: int) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(
        run_dir=tmp_path_factory.mktemp("outage-kafka"),
        cache_dir=load_settings().cache_dir,
        port=21092 + port_offset,
        controller_port=21093 + port_offset,
        heap_mb=384,
        ready_probe=broker_answers,
    )
    broker.start(timeout_s=120)
    yield broker
    broker.stop()


def test_a_broker_outage_is_logged_briefly_and_its_end_once(broker, tmp_path, port_offset):
    settings = Settings(
        run_dir=tmp_path,
        kafka={"bootstrap_servers": broker.bootstrap_servers, "partitions": 4},
        store={"url": f"sqlite:///{tmp_path / 'store.sqlite'}"},
        worker={
            "app_id": "ctriage-outage-logs",
            "data_dir": tmp_path / "worker",
            "metrics_port": 21190 + port_offset,
            "web_port": 21196 + port_offset,
        },
    )
    worker = WorkerProcess(settings)
    worker.start(timeout_s=180)
    try:
        time.sleep(3)
        before = len(worker.log_path.read_text().splitlines())
        assert broker.pid is not None
        broker.stop(timeout_s=0.1)  # no time for a clean shutdown: SIGKILL after 0.1 s
        time.sleep(OUTAGE_S)
        broker.start(timeout_s=120)
        wait_for(
            lambda: "Kafka reachable again" in worker.log_path.read_text(), 90, "recovery line"
        )
        lines = worker.log_path.read_text().splitlines()[before:]
    finally:
        worker.stop()
    problems = [line for line in lines if "[ERROR]" in line or "[WARNING]" in line]
    back = [line for line in lines if "Kafka reachable again" in line]
    print(f"\n{OUTAGE_S:.0f}s broker outage: {len(problems)} warning/error lines; {back}")
    assert len(back) == 1
    assert len(problems) <= 60, "\n".join(problems[-20:])
