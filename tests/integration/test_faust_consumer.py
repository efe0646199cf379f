"""The consumer's repair for stranded records, on a real broker and a real aiokafka consumer.

What strands records (a rebalance under a fetch) is played by ``test_crash.py`` with real
workers; here the two steps the repair is made of: read the positions, seek back only where the
position ran past the target, never forward, never a partition no longer assigned.
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

from streams.faust_consumer import _positions, _rewind_positions

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
            before = await _positions(consumer, [p0, p1])
            rewound = await _rewind_positions(consumer, {p0: 4, p1: 0})
            again = await consumer.getmany(timeout_ms=10000)
            offsets = [r.offset for r in again.get(TopicPartition(topic, 0), [])]
            # a target at or past the position (a seek went further back since) is left
            untouched = await _rewind_positions(consumer, {p0: 12})
            after = await _positions(consumer, [p0])
            return before, rewound, untouched, offsets, after
        finally:
            await consumer.stop()

    before, rewound, untouched, offsets, after = asyncio.run(play())
    assert before == {p0: 10}  # only assigned partitions have a position
    assert rewound == {p0: (4, 10)}  # p1 not assigned: left alone
    assert offsets == [4, 5, 6, 7, 8, 9]  # the stranded records come again, in order
    assert untouched == {} and after == {p0: 10}  # never moved forward
