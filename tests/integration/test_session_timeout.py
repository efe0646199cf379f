"""A worker's session timeout is checked against the real broker's bounds before it starts.

Below ``group.min.session.timeout.ms`` (Kafka's default 6 s) the broker refuses the member with
``InvalidSessionTimeoutError`` and the worker used to wait forever (2026-12-06, a 4 s trial in
the chaos suite); now it does not start, and says why.
"""

from __future__ import annotations

import pytest
from kafka.admin import KafkaAdminClient

from streams.topics import SessionTimeoutRefused, check_session_timeout, ensure_topics

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(kafka_broker):  # type: ignore[no-untyped-def]
    client = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
    yield client
    client.close()


@pytest.mark.parametrize("seconds", [6.0, 45.0, 1800.0])
def test_a_session_timeout_within_the_brokers_bounds_passes(admin, seconds: float) -> None:  # type: ignore[no-untyped-def]
    check_session_timeout(admin, seconds)


@pytest.mark.parametrize("seconds", [4.0, 5.999, 1800.5])
def test_a_session_timeout_the_broker_would_refuse_stops_the_worker(admin, seconds: float) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SessionTimeoutRefused, match="group.min.session.timeout.ms"):
        check_session_timeout(admin, seconds)


def test_the_worker_start_checks_it(kafka_broker) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SessionTimeoutRefused, match="would never join"):
        ensure_topics(kafka_broker.bootstrap_servers, 2, app_id="ctriage-it-session",
                      session_timeout_s=4.0)  # fmt: skip
