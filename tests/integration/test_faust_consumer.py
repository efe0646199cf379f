"""The consumer's repair for stranded records, on a real broker and a real aiokafka consumer.

What strands records (a rebalance under a fetch) is played by ``test_crash.py`` and
``test_alert_log.py`` with real workers; here the steps the repairs are made of: read the
positions, seek back only where the position ran past the target, never forward, never a
partition no longer assigned; and the rebalance's seek made real for a partition the group never
committed (aiokafka leaves those where the fetcher stands).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from faust.types import TP
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import TopicPartition as KafkaTopicPartition

from streams.consumer_offsets import log_starts, positions, rewind_positions, seek_to_start

pytestmark = pytest.mark.integration


def _topic_with_records(bootstrap: str, records: int) -> str:
    topic = f"it-stranded-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for i in range(records):
            producer.send(topic, value=f"r{i}".encode(), partition=0)
        producer.flush()
    finally:
        producer.close()
    return topic


def test_stranded_records_are_fetched_again_and_nothing_moves_forward(kafka_broker) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = _topic_with_records(bootstrap, 10)
    p0, p1 = TP(topic, 0), TP(topic, 1)

    async def play() -> tuple[dict, dict, dict, list[int], dict]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 0)])  # p1 is not assigned
            fetched = await consumer.getmany(timeout_ms=10000)
            while sum(len(v) for v in fetched.values()) < 10:  # pragma: no cover - slow broker
                more = await consumer.getmany(timeout_ms=5000)
                for k, v in more.items():
                    fetched.setdefault(k, []).extend(v)
            # every record fetched, none handed out: the stranding the repair is for
            before = await positions(consumer, [p0, p1])
            rewound = await rewind_positions(consumer, {p0: 4, p1: 0})
            again = await consumer.getmany(timeout_ms=10000)
            offsets = [r.offset for r in again.get(TopicPartition(topic, 0), [])]
            # a target at or past the position (a seek went further back since) is left
            untouched = await rewind_positions(consumer, {p0: 12})
            after = await positions(consumer, [p0])
            return before, rewound, untouched, offsets, after
        finally:
            await consumer.stop()

    before, rewound, untouched, offsets, after = asyncio.run(play())
    assert before == {p0: 10}  # only assigned partitions have a position
    assert rewound == {p0: (4, 10)}  # p1 not assigned: left alone
    assert offsets == [4, 5, 6, 7, 8, 9]  # the stranded records come again, in order
    assert untouched == {} and after == {p0: 10}  # never moved forward


def test_a_partition_never_committed_is_sought_to_its_start(kafka_broker) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = _topic_with_records(bootstrap, 6)
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)

    async def play() -> tuple[dict, int, list[int], int]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=f"it-seek-{uuid.uuid4().hex[:8]}",  # a group that never committed
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            consumer.assign([p0, p1])
            fetched = await consumer.getmany(p0, timeout_ms=10000)
            while len(fetched.get(p0, [])) < 6:  # pragma: no cover - slow broker
                fetched.setdefault(p0, []).extend((await consumer.getmany(p0)).get(p0, []))
            # every record fetched and dropped: aiokafka's own seek to committed leaves them
            committed = await consumer.seek_to_committed()
            stays = await consumer.position(p0)
            await seek_to_start(consumer, {TP(topic, 0): committed[p0], TP(topic, 1): 0})
            again = await consumer.getmany(p0, timeout_ms=10000)
            return (
                committed,
                stays,
                [r.offset for r in again.get(p0, [])],
                await consumer.position(p1),
            )
        finally:
            await consumer.stop()

    committed, stays, offsets, p1_position = asyncio.run(play())
    assert committed[p0] is None and stays == 6  # nothing committed, and the position stood
    assert offsets == [0, 1, 2, 3, 4, 5]  # every record comes again
    assert p1_position == 0  # committed 0: sought to 0


def test_the_watchdog_reads_where_a_partition_starts(kafka_broker) -> None:
    """Where a group that never committed starts (``earliest``): the log start, not 0."""
    bootstrap = kafka_broker.bootstrap_servers
    topic = _topic_with_records(bootstrap, 5)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:  # retention removed the first two records
        admin.delete_records({KafkaTopicPartition(topic, 0): 2})
    finally:
        admin.close()

    async def play() -> dict:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 0)])  # p1 is not assigned
            return await log_starts(consumer, [TP(topic, 0), TP(topic, 1)])
        finally:
            await consumer.stop()

    assert asyncio.run(play()) == {TP(topic, 0): 2}
