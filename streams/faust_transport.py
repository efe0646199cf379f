"""The worker's Kafka transport: Faust's aiokafka driver with our consumer and producer.

The consumer (:class:`streams.faust_consumer.Consumer`) repairs the records a rebalance
strands; the producer is idempotent. ``streams/app.py`` installs :class:`Transport`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.faust_consumer import Consumer


class Producer(faust_aiokafka.Producer):
    """Faust's aiokafka producer, idempotent: a send retried after a broker died is written once.

    Faust asks aiokafka for idempotence only inside transactions, and aiokafka's default is off.
    A produce request the dying leader had written but not answered was sent again to the new
    leader and written twice: the 1,000-study broker-kill chaos run found an alert id twice on
    ``triage.alerts`` (2026-12-07; nothing was settled or processed twice: "Got error produce
    response: KafkaConnectionError" in the worker's log). With idempotence the brokers drop the
    retried copy (producer id and sequence numbers; ``acks=all``, as the app sets).
    """

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "enable_idempotence": True}


class Transport(faust_aiokafka.Transport):
    """The aiokafka transport with :class:`Consumer` and :class:`Producer`."""

    Consumer = Consumer
    Producer = Producer
