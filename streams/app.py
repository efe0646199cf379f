"""The Faust application: topics with their value types, then the agents' tables and agents.

The app is built by :func:`build_app` rather than at import, so importing ``streams`` reads no
environment and opens no connection. This module only builds: what the agents share is a
:class:`~streams.pipeline.Pipeline`, and each agent module has a ``register(pipeline)`` that
declares its tables and agents on the app. Agents never import this module.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import faust
from faust.serializers.codecs import Codec

from streams import topics as t
from streams.faust_transport import Transport
from streams.kafka_security import KafkaSecurity
from streams.metrics import ASSIGNED_PARTITIONS
from streams.pipeline import Dependencies, Pipeline, load_registry
from streams.records import Record
from streams.settings import Settings

logger = logging.getLogger(__name__)

_WILDCARDS = frozenset({"0.0.0.0", "::", ""})


class RecordCodec(Codec):
    """JSON records on the wire: a record is encoded by itself, bytes pass as they are.

    Decoding leaves the bytes to the topic's ``value_type`` (:meth:`Record.from_data`), which
    turns a malformed payload into a value the agent dead-letters instead of an error that
    Faust would raise inside the stream.
    """

    def _loads(self, s: bytes) -> Any:
        return s

    def _dumps(self, s: Any) -> bytes:
        return s.to_bytes() if isinstance(s, Record) else bytes(s)


def _faust_app(settings: Settings) -> faust.App:
    worker = settings.worker
    app = faust.App(
        worker.app_id,
        broker=f"kafka://{settings.kafka.bootstrap_servers}",
        store="memory://",
        autodiscover=False,
        web_enabled=True,
        # the URL the worker advertises: its host name when it listens on every interface
        web_host=socket.gethostname() if worker.bind_host in _WILDCARDS else worker.bind_host,
        web_bind=worker.bind_host,
        web_port=worker.own_web_port,
        datadir=str(worker.own_data_dir),
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        table_standby_replicas=0,
        broker_commit_every=50,
        broker_commit_interval=1.0,
        # a crashed worker's partitions move within seconds (docs/fault-tolerance.md)
        broker_session_timeout=worker.session_timeout_s,
        broker_heartbeat_interval=worker.heartbeat_interval_s,
        producer_acks=-1,  # acks=all: a record is kept by every in-sync replica
        stream_wait_empty=False,
        # TLS and the worker's SASL principal (none for PLAINTEXT)
        **KafkaSecurity.from_settings(settings.kafka).faust(),
    )
    # Faust's consumer, less the records a rebalance strands (streams/faust_consumer.py)
    app.transport = Transport(app.conf.broker_consumer, app)
    return app


def build_app(settings: Settings, deps: Dependencies) -> Pipeline:
    """Declare topics (with their value types), tables and agents on a new Faust app."""
    from streams.agents import capacity, clinical, config, quantify, risk, sinks, writeback

    app = _faust_app(settings)
    registry = load_registry(settings, deps.hospital_capacity_beds, deps.default_capacity_beds)
    pipeline = Pipeline(app=app, settings=settings, deps=deps, registry=registry)
    codec = RecordCodec()
    value_types = t.value_types()
    for name, (partitions, _compacted) in t.topic_layout(settings.kafka.partitions).items():
        pipeline.topics[name] = app.topic(
            name,
            partitions=partitions,
            key_serializer="raw",
            value_type=value_types[name],  # type: ignore[arg-type]  # a Record, not a faust Model
            value_serializer=codec,
            internal=False,
        )
    # clinical declares the context table that risk reads; risk the tables clinical re-scores with
    for module in (config, clinical, quantify, risk, capacity, sinks, writeback):
        module.register(pipeline)

    async def _count_partitions(sender: Any, **_: Any) -> None:
        ASSIGNED_PARTITIONS.set(len(app.consumer.assignment()))

    app.on_rebalance_complete.connect(_count_partitions)  # type: ignore[arg-type]

    return pipeline
