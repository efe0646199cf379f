"""The worker's Kafka transport: its producer is idempotent (streams/faust_transport.py)."""

from __future__ import annotations

import asyncio

import pytest

from streams.app import _faust_app
from streams.settings import Settings

pytestmark = pytest.mark.unit


def test_the_worker_producer_is_idempotent() -> None:
    """Faust asks aiokafka for idempotence only in transactions: a produce retried after a
    broker died was written twice (an alert id twice on triage.alerts in a broker-kill chaos
    run). The worker's producer asks for it, with acks=all."""

    async def build() -> tuple[bool, object]:
        app = _faust_app(Settings())
        client = app.producer._new_producer()  # type: ignore[attr-defined]
        try:
            return client._txn_manager is not None, client._sender._acks
        finally:
            await client.stop()

    assert asyncio.run(build()) == (True, -1)
