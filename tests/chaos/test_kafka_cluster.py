"""A local 3-node KRaft cluster (deploy/kafka_cluster.py) survives one node's SIGKILL.

Three combined broker+controller nodes on loopback; the project's topics are created with
replication 3 and ``min.insync.replicas`` 2 (what a 3-node deployment uses). Records sent with
``acks=all`` before and after the leader of a partition is SIGKILLed are all read back, and the
killed node, started again alone, rejoins the quorum. About 45 s on the shared 2-core machine
(three JVMs), so it runs with ``make chaos``, not ``make test``.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from deploy.kafka_cluster import KafkaCluster
from streams import topics as t

pytestmark = pytest.mark.chaos

TOPIC = t.CT_QUANTIFICATION.name
RUN = uuid.uuid4().hex[:8]  # the session's cluster also carries the chaos scenarios' records


def _admin(bootstrap_servers: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=30000)


def _send(bootstrap_servers: str, values: list[bytes]) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers, acks="all", retries=10, request_timeout_ms=20000
    )
    try:
        for value in values:
            producer.send(TOPIC, key=value, value=value).get(timeout=60)
    finally:
        producer.close()


def _read_all(bootstrap_servers: str, expected: int) -> list[bytes]:
    consumer = KafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < expected and time.monotonic() < deadline:
            got.extend(m.value for m in consumer if m.value.startswith(RUN.encode()))
    finally:
        consumer.close()
    return got


def test_three_nodes_replicate_and_survive_one_sigkill(cluster: KafkaCluster) -> None:
    servers = cluster.bootstrap_servers
    t.ensure_topics(servers, patient_partitions=4, timeout_s=60, replication=3, min_insync=2)
    admin = _admin(servers)
    try:
        described = admin.describe_topics([TOPIC])[0]
        resource = ConfigResource(ConfigResourceType.TOPIC, TOPIC, ["min.insync.replicas"])
        configs = admin.describe_configs([resource])
    finally:
        admin.close()
    partitions = described["partitions"]
    assert all(len(p["replica_nodes"]) == 3 for p in partitions)
    assert configs["topic"][TOPIC]["min.insync.replicas"]["value"] == "2"

    before = [f"{RUN}-before-{i}".encode() for i in range(20)]
    _send(servers, before)
    leader = next(p["leader_id"] for p in partitions if p["partition_index"] == 0)
    victim = next(node for node in cluster.nodes if node.node_id == leader)
    assert victim.pid is not None
    killed_at = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    victim.stop(timeout_s=10)  # reaps the dead JVM (our child) and drops its pid file
    survivors = ",".join(n.bootstrap_servers for n in cluster.nodes if n is not victim)
    after = [f"{RUN}-after-{i}".encode() for i in range(20)]
    _send(survivors, after)  # acks=all with 2 of 3 in sync: accepted
    sent_again_s = time.monotonic() - killed_at
    got = _read_all(survivors, len(before) + len(after))
    print(f"\nleader node {leader} SIGKILLed: 20 acks=all sends done {sent_again_s:.1f}s after")
    assert sorted(got) == sorted(before + after)

    victim.start(timeout_s=120)  # alone: the two others hold the quorum
    assert cluster.node_states() == [True, True, True]
    assert Path(victim.data_dir / "meta.properties").is_file()
