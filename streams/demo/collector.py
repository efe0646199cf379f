"""Read what the pipeline emitted (risks, alerts, forecasts, dead letters) from Kafka.

Used by the demo screen and the tests: a group-less consumer over every output topic, from the
beginning, so it sees the whole replay whenever it starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from kafka import KafkaConsumer, TopicPartition
from pydantic import ValidationError

from streams import topics as t
from streams.demo.summary import ReplayOutcome
from streams.kafka_security import PLAINTEXT, KafkaSecurity
from streams.records import Alert, DeadLetter, RiskAssessment, UnitForecastRecord

OUTPUT_TOPICS = (t.TRIAGE_RISK.name, t.TRIAGE_ALERTS.name, t.CAPACITY_FORECASTS.name)


def dead_letter_topics() -> list[str]:
    """Every dead-letter twin."""
    return [spec.dlq for spec in t.ALL_TOPICS if spec.has_dlq]


class OutputCollector:
    """Accumulates the pipeline's outputs into a :class:`ReplayOutcome`."""

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Iterable[str] | None = None,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        names = list(topics) if topics is not None else [*OUTPUT_TOPICS, *dead_letter_topics()]
        self.outcome = ReplayOutcome()
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **security.kafka_python(),
        )
        partitions = [
            TopicPartition(name, p)
            for name in names
            for p in sorted(self._consumer.partitions_for_topic(name) or {0})
        ]
        self._consumer.assign(partitions)
        self._consumer.seek_to_beginning(*partitions)
        self.on_alert: Callable[[Alert], None] | None = None
        self.on_dead_letter: Callable[[DeadLetter], None] | None = None
        self.unparsable = 0

    def poll(self, timeout_s: float = 0.5) -> int:
        """Read what arrived within ``timeout_s``; returns the number of records read."""
        batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=500)
        count = 0
        for partition, records in batches.items():
            for record in records:
                count += 1
                try:
                    self._add(partition.topic, record.value)
                except ValidationError:
                    self.unparsable += 1
        return count

    def drain(self, quiet_s: float = 2.0, timeout_s: float = 20.0) -> None:
        """Read until nothing has arrived for ``quiet_s`` (at most ``timeout_s``).

        A study's alerts, its worsening alert and the forecast it moved are sent after its risk
        record: once every risk is in, they may still be on their way (seconds under load).
        """
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < quiet_s:
            if self.poll(0.5):
                quiet_since = time.monotonic()

    def _add(self, topic: str, value: bytes) -> None:
        outcome = self.outcome
        if topic == t.TRIAGE_RISK.name:
            outcome.add_risk(RiskAssessment.model_validate_json(value))
        elif topic == t.TRIAGE_ALERTS.name:
            alert = Alert.model_validate_json(value)
            is_new = alert.alert_id not in outcome.alerts
            outcome.alerts[alert.alert_id] = alert
            if is_new and self.on_alert is not None:
                self.on_alert(alert)
        elif topic == t.CAPACITY_FORECASTS.name:
            outcome.forecast = UnitForecastRecord.model_validate_json(value)
        else:
            letter = DeadLetter.model_validate_json(value)
            outcome.dead_letters.append(letter)
            if self.on_dead_letter is not None:
                self.on_dead_letter(letter)

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()
