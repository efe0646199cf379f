"""The outage log limiter on a real logging handler (a fake clock, no broker)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from streams.log_limits import OutageLogLimiter

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logged() -> Iterator[tuple[io.StringIO, Clock]]:
    out, clock = io.StringIO(), Clock()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(OutageLogLimiter(window_s=30, clock=clock))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)  # as in the worker
    yield out, clock
    root.setLevel(level)
    root.removeHandler(handler)


def test_an_outage_logs_each_error_once_per_window_and_one_line_on_recovery(logged) -> None:
    out, clock = logged
    client = logging.getLogger("aiokafka.conn")
    for second in range(25):  # 25 s of an unreachable broker, 100 lines a second
        clock.now = float(second)
        for _ in range(100):
            client.error("Unable connect to %s", "127.0.0.1:19092")
        logging.getLogger("streams.agents").warning("our own line")  # never limited
    clock.now = 26.0
    logging.getLogger("aiokafka.consumer.group_coordinator").info("Joined group %r", "ctriage")
    lines = out.getvalue().splitlines()
    assert sum("Unable connect" in line for line in lines) == 1
    assert sum("our own line" in line for line in lines) == 25
    back = [line for line in lines if "Kafka reachable again" in line]
    assert back == [
        "WARNING aiokafka.consumer.group_coordinator: Kafka reachable again after 26s of "
        "errors (2499 repeated lines held back); Joined group 'ctriage'"
    ]


def test_a_lasting_error_passes_again_after_the_window(logged) -> None:
    out, clock = logged
    client = logging.getLogger("kafka.client")
    client.error("boom")
    clock.now = 10.0
    client.error("boom")
    clock.now = 31.0
    client.error("boom")
    assert out.getvalue().count("boom") == 2


def test_a_clean_start_logs_no_recovery_line(logged) -> None:
    out, _ = logged
    logging.getLogger("aiokafka").warning("GroupCoordinatorNotAvailableError")
    logging.getLogger("aiokafka").info("Joined group")
    assert "reachable again" not in out.getvalue()
