"""Fixtures of the chaos suite: a real 3-node Kafka cluster on loopback.

Ports 20392/20492/20592 (+ ``CTRIAGE_TEST_PORT_OFFSET``), controllers one above each; the
cluster lives for the session and every test leaves its three nodes running.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from stream_checks import CHAOS_SESSION_TIMEOUT_S

from deploy.exceptions import ServiceError
from deploy.kafka_cluster import KafkaCluster
from streams.kafka_health import broker_answers
from streams.settings import load_settings

CLUSTER_TEST_PORT = 20392
CLUSTER_TEST_CONTROLLER_PORT = 20393


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory, port_offset: int) -> Iterator[KafkaCluster]:
    """Three real Kafka nodes (combined broker+controller), started together."""
    cluster = KafkaCluster(
        run_dir=tmp_path_factory.mktemp("kafka-cluster"),
        cache_dir=load_settings().cache_dir,
        nodes=3,
        port=CLUSTER_TEST_PORT + port_offset,
        controller_port=CLUSTER_TEST_CONTROLLER_PORT + port_offset,
        heap_mb=384,
        ready_probe=broker_answers,
        # the workers' session timeout must be accepted (Kafka's own floor is 6 s)
        min_session_timeout_ms=min(6000, int(CHAOS_SESSION_TIMEOUT_S * 1000)),
    )
    try:
        cluster.start(timeout_s=180)
    except ServiceError as e:
        cluster.stop()
        pytest.fail(f"the 3-node Kafka cluster did not start: {e}", pytrace=False)
    yield cluster
    cluster.stop()
