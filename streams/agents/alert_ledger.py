"""Alerts sent exactly once: the alert and the memory of having sent it in one Kafka transaction.

The risk core decides an alert from what ``alerted_studies`` remembers. Were the alert sent and
remembered in two writes, a crash between them would send it again on redelivery. Here, for
each partition of the patient-keyed topics, one transactional producer (id
``<app id>-alerts-<partition>``) writes the alert to ``triage.alerts``, its FHIR twin to
``triage.alerts.fhir`` and the memo to ``alerted_studies``' changelog in one transaction: all
three are visible to ``read_committed`` readers, or none is.

Before a worker uses a partition's memos it fences that partition's previous owner (its
producer's initialisation aborts the dead or evicted owner's open transaction and refuses its
later commits), then reads the memos back ``read_committed`` up to the last stable offset. A
record redelivered after a crash therefore finds its alert remembered exactly when that alert
is on the topic. Faust's own exactly-once mode was not used (docs/fault-tolerance.md: it picks
the transaction by the destination partition and cannot send to topics it does not consume).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from streams import topics as t
from streams.kafka_security import KafkaSecurity
from streams.pipeline import Pipeline
from streams.settings import Settings

logger = logging.getLogger(__name__)

#: The table name whose changelog topic holds the memos (created with the other changelogs).
TABLE = "alerted_studies"


#: A transaction that has not committed within this is given up (aborted by the next holder).
TRANSACTION_TIMEOUT_S = 30.0


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), TRANSACTION_TIMEOUT_S)
    except (KafkaError, TimeoutError) as e:
        logger.warning("alert ledger: a failed producer did not stop cleanly: %r", e)


class AlertFenced(RuntimeError):
    """The lease is stale (another worker took the partition) or its transaction failed."""


@dataclass(frozen=True)
class Lease:
    """The right to send a partition's alerts: valid while its producer is the current one."""

    partition: int
    producer: AIOKafkaProducer


def _decode_key(raw: bytes) -> str:
    # memos written by the Faust table this ledger replaced have JSON-quoted keys
    text = raw.decode()
    return json.loads(text) if text.startswith('"') else text


class AlertLedger(Mapping[str, Any]):
    """What ``alerted_studies`` remembers (a read-only mapping) and the transactional send.

    ``ready(partition)`` must be awaited before the memos of a partition are read (decide
    after it, send with its lease); the mapping holds the memos of every partition made ready
    since the worker started.
    """

    def __init__(self, settings: Settings) -> None:
        self._servers = settings.kafka.bootstrap_servers
        self._security = KafkaSecurity.from_settings(settings.kafka)
        self._app_id = settings.worker.app_id
        self.topic = t.changelog_topic(self._app_id, TABLE)
        #: as a Faust table would say: the memos' topic is co-partitioned with the patient topics
        self.partitions = settings.kafka.partitions
        self._memos: dict[str, Any] = {}
        self._producers: dict[int, AIOKafkaProducer] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    def __getitem__(self, key: str) -> Any:
        return self._memos[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._memos)

    def __len__(self) -> int:
        return len(self._memos)

    def _lock(self, partition: int) -> asyncio.Lock:
        return self._locks.setdefault(partition, asyncio.Lock())

    async def ready(self, partition: int) -> Lease:
        """Fence the partition's previous holder and load its memos; the lease to send with.

        A producer is kept across rebalances: if another worker took the partition meanwhile,
        it fenced this one, the next send fails with :class:`AlertFenced`, and the caller
        makes the partition ready again (fence, reload) and decides again.
        """
        async with self._lock(partition):
            producer = self._producers.get(partition)
            if producer is not None:
                return Lease(partition, producer)
            producer = AIOKafkaProducer(
                bootstrap_servers=self._servers,
                transactional_id=f"{self._app_id}-alerts-{partition}",
                enable_idempotence=True,
                acks="all",
                **self._security.aiokafka(),
            )
            await producer.start()
            try:
                # an empty transaction waits for the producer id: the broker has then aborted
                # the previous holder's open transaction and will refuse its commits
                await producer.begin_transaction()
                await producer.abort_transaction()
                loaded = await self._load(partition)
            except BaseException:
                await producer.stop()
                raise
            self._producers[partition] = producer
            logger.info("alert ledger: partition %d ready (%d memos)", partition, loaded)
            return Lease(partition, producer)

    async def _load(self, partition: int) -> int:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._servers,
            isolation_level="read_committed",
            enable_auto_commit=False,
            **self._security.aiokafka(),
        )
        await consumer.start()
        try:
            tp = TopicPartition(self.topic, partition)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]  # the last stable offset
            loaded = 0
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for message in batch.get(tp, []):
                    if message.key is not None and message.value is not None:
                        self._memos[_decode_key(message.key)] = json.loads(message.value)
                        loaded += 1
            return loaded
        finally:
            await consumer.stop()

    async def send(
        self,
        lease: Lease,
        memo_key: str,
        memo: dict[str, Any],
        records: list[tuple[str, bytes, bytes]],
    ) -> None:
        """Send ``records`` (topic, key, value) and remember ``memo`` in one transaction.

        Raises :class:`AlertFenced` when ``lease`` is no longer the partition's current one or
        the transaction failed (it is aborted): make the partition ready again, decide again.
        """
        async with self._lock(lease.partition):
            producer = self._producers.get(lease.partition)
            if producer is not lease.producer:
                raise AlertFenced(f"partition {lease.partition}: stale lease for {memo_key}")
            try:
                await asyncio.wait_for(
                    self._transaction(producer, lease.partition, memo_key, memo, records),
                    TRANSACTION_TIMEOUT_S,
                )
            except (KafkaError, TimeoutError) as e:  # fenced, failed or stuck: a new producer
                self._producers.pop(lease.partition, None)
                await _stop_quietly(producer)
                raise AlertFenced(f"partition {lease.partition}: {memo_key} not sent: {e!r}") from e
            self._memos[memo_key] = memo

    async def _transaction(
        self,
        producer: AIOKafkaProducer,
        partition: int,
        memo_key: str,
        memo: dict[str, Any],
        records: list[tuple[str, bytes, bytes]],
    ) -> None:
        async with producer.transaction():
            # each record acknowledged before the commit: a failed send aborts, never hangs
            for topic, key, value in records:
                await producer.send_and_wait(topic, value=value, key=key)
            await producer.send_and_wait(
                self.topic, key=memo_key.encode(), value=json.dumps(memo).encode(),
                partition=partition,
            )  # fmt: skip

    async def stop(self) -> None:
        """Stop every producer (the worker is stopping)."""
        producers, self._producers = self._producers, {}
        for producer in producers.values():
            await producer.stop()


def ledger_of(pipeline: Pipeline) -> AlertLedger:
    """The worker's ledger (``alerted_studies``), declared by the risk agent's ``register``."""
    ledger = pipeline.tables[TABLE]
    if not isinstance(ledger, AlertLedger):
        raise TypeError(f"{TABLE} is a {type(ledger).__name__}, not an AlertLedger")
    return ledger


def declare_ledger(pipeline: Pipeline) -> AlertLedger:
    """Create the ledger as ``alerted_studies``; its producers stop with the worker."""
    ledger = AlertLedger(pipeline.settings)
    pipeline.tables[TABLE] = ledger

    async def _stop(sender: Any, **_: Any) -> None:
        await ledger.stop()

    pipeline.app.on_before_shutdown.connect(_stop)  # type: ignore[arg-type]
    return ledger


#: How often a partition is made ready again (fence, reload, decide again) for one alert.
SEND_ATTEMPTS = 5

#: What an alert decision sends: (memo key, memo, [(topic, key, value)]), or None for nothing.
AlertPlan = tuple[str, dict[str, Any], list[tuple[str, bytes, bytes]]] | None


async def send_once(pipeline: Pipeline, lease: Lease, plan: Callable[[], AlertPlan]) -> bool:
    """Send what ``plan`` decides (from the ledger as it stands) exactly once; True if sent.

    ``plan`` is called again after the partition is made ready anew when the send was fenced
    (another worker took the partition and may have sent the alert) or its transaction failed.
    """
    ledger = ledger_of(pipeline)
    for attempt in range(1, SEND_ATTEMPTS + 1):
        planned = plan()
        if planned is None:
            return False
        try:
            await ledger.send(lease, *planned)
            return True
        except AlertFenced as e:
            if attempt == SEND_ATTEMPTS:
                raise
            logger.warning("alert not sent (%s); deciding again after a fresh lease", e)
            lease = await ledger.ready(lease.partition)
    return False  # not reached: the last attempt returns or raises
