"""Re-publish dead letters once their cause is fixed (``ctriage dlq replay``).

A dead letter (:class:`streams.records.DeadLetter`) keeps the original message's key and bytes
and the topic it came from; replaying sends exactly those back to that topic. The same key and
payload mean the same study and patient ids, so the pipeline's outputs stay idempotent: the store
upserts by study and keeps the highest revision, alert ids are deterministic per study and rule
version. Replaying twice, or replaying a letter that is dead-lettered again, adds no duplicate.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from kafka import KafkaConsumer, KafkaProducer
from pydantic import ValidationError

from streams.kafka_security import PLAINTEXT, KafkaSecurity
from streams.records import DeadLetter

logger = logging.getLogger(__name__)

DLQ_SUFFIX = ".dlq"


class ReplayError(ValueError):
    """The topic named is not a dead-letter topic (its name must end in ``.dlq``)."""


@dataclass
class ReplayReport:
    """What a replay found and sent: letters per reason, sent, skipped by the reason filter."""

    topic: str
    found: Counter[str] = field(default_factory=Counter)
    replayed: int = 0
    skipped: int = 0
    unreadable: int = 0


def replay_dead_letters(
    bootstrap_servers: str,
    dlq_topic: str,
    reason: str | None = None,
    idle_timeout_s: float = 5.0,
    security: KafkaSecurity = PLAINTEXT,
) -> ReplayReport:
    """Send every dead letter on ``dlq_topic`` (of ``reason`` only, if given) back to its source.

    Reads the topic from its beginning without a consumer group (a later replay with another
    reason still finds every letter) until no record arrives for ``idle_timeout_s``; sends with
    ``acks=all`` and flushes before returning.
    """
    if not dlq_topic.endswith(DLQ_SUFFIX):
        raise ReplayError(f"{dlq_topic!r} is not a dead-letter topic (name ends in {DLQ_SUFFIX})")
    report = ReplayReport(topic=dlq_topic)
    source = dlq_topic.removesuffix(DLQ_SUFFIX)
    consumer = KafkaConsumer(
        dlq_topic,
        bootstrap_servers=bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(idle_timeout_s * 1000),
        **security.kafka_python(),
    )
    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers, acks="all", retries=10, **security.kafka_python()
    )
    try:
        for message in consumer:
            try:
                letter = DeadLetter.model_validate_json(message.value)
            except ValidationError as e:
                logger.warning(
                    "offset %d of %s is no dead letter: %s", message.offset, dlq_topic, e
                )
                report.unreadable += 1
                continue
            report.found[letter.reason_code] += 1
            if reason is not None and letter.reason_code != reason:
                report.skipped += 1
                continue
            key = letter.key.encode() if letter.key is not None else None
            # to the DLQ's twin, the topic whose consumer dead-lettered it (an ingress letter
            # names its input, not a topic, in source_topic)
            producer.send(source, key=key, value=letter.payload.encode())
            report.replayed += 1
        producer.flush()
    finally:
        producer.close()
        consumer.close()
    logger.info("replayed %d dead letters of %s to %s", report.replayed, dlq_topic, source)
    return report
