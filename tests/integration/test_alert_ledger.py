"""Exactly one alert under every crash point of its send, on the real broker.

The alert ledger (:mod:`streams.agents.alert_ledger`) sends an alert and its memo in one Kafka
transaction per partition. Each crash point is played with a second ledger taking the partition
over, as a restarted worker does:

- a crash after the alert was sent but before the transaction committed: the new holder aborts
  it; ``read_committed`` readers never see it, the memo is not there, the alert is sent again
  and is then on the topic once;
- a crash after the commit (before the offset commit, so the record comes back): the new
  holder finds the memo and decides to send nothing;
- a holder that was evicted but is still alive (a zombie) cannot commit any more.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer, TopicPartition

from streams import topics as t
from streams.agents.alert_ledger import AlertFenced, AlertLedger
from streams.settings import Settings
from streams.topics import ensure_topics

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
PARTITION = 2


@pytest.fixture(scope="module")
def settings(kafka_broker) -> Settings:
    settings = Settings(
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "partitions": 4},
        worker={"app_id": f"ctriage-ledger-it-{RUN}"},
    )
    ensure_topics(settings.kafka.bootstrap_servers, 4, app_id=settings.worker.app_id)
    return settings


def _alert_ids(servers: str, isolation_level: str) -> list[str]:
    consumer = KafkaConsumer(
        bootstrap_servers=servers,
        isolation_level=isolation_level,
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    tps = [TopicPartition(t.TRIAGE_ALERTS.name, p) for p in range(4)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    try:
        return [json.loads(m.value)["alert_id"] for m in consumer if m.key == f"k1-{RUN}".encode()]
    finally:
        consumer.close()


def _records(alert_id: str) -> list[tuple[str, bytes, bytes]]:
    value = json.dumps({"alert_id": alert_id}).encode()
    return [(t.TRIAGE_ALERTS.name, f"k1-{RUN}".encode(), value)]


async def _crash_mid_transaction(settings: Settings, alert_id: str) -> AIOKafkaProducer:
    """What a worker leaves when killed after sending, before committing: an open transaction."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        transactional_id=f"{settings.worker.app_id}-alerts-{PARTITION}",
        enable_idempotence=True,
        acks="all",
    )
    await producer.start()
    await producer.begin_transaction()
    for topic, key, value in _records(alert_id):
        await producer.send_and_wait(topic, value=value, key=key)
    await producer.send_and_wait(
        t.changelog_topic(settings.worker.app_id, "alerted_studies"),
        key=alert_id.encode(),
        value=json.dumps({"alert_id": alert_id}).encode(),
        partition=PARTITION,
    )
    return producer  # never committed


async def _play(settings: Settings, alert_id: str) -> None:
    crashed = await _crash_mid_transaction(settings, alert_id)
    # a restarted worker takes the partition over: the open transaction is aborted
    restarted = AlertLedger(settings)
    lease = await restarted.ready(PARTITION)
    assert alert_id not in restarted  # the memo went with the aborted transaction
    await restarted.send(lease, alert_id, {"alert_id": alert_id}, _records(alert_id))

    # killed after the commit: the next holder finds the memo, so nothing is sent again
    after_commit = AlertLedger(settings)
    await after_commit.ready(PARTITION)
    assert after_commit[alert_id] == {"alert_id": alert_id}

    # the previous holder is alive but evicted: its commit is refused
    with pytest.raises(AlertFenced):
        await restarted.send(lease, alert_id + "-zombie", {}, _records(alert_id + "-zombie"))
    for ledger in (restarted, after_commit):
        await ledger.stop()
    await crashed.stop()


def test_every_crash_point_leaves_one_alert(settings: Settings):
    alert_id = f"alert-{RUN}"
    asyncio.run(_play(settings, alert_id))
    servers = settings.kafka.bootstrap_servers
    assert _alert_ids(servers, "read_committed") == [alert_id]
    # the aborted copy is in the log: only a read_uncommitted reader would see it twice
    assert _alert_ids(servers, "read_uncommitted").count(alert_id) == 2
