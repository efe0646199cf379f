"""The Faust app's web port binds the configured host (Prometheus must reach a container's)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from streams.app import _faust_app
from streams.faust_consumer import FETCH_MAX_WAIT_MS, ConsumerThread
from streams.settings import Settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("bind_host", "advertised"),
    [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", socket.gethostname())],
)
def test_web_port_binds_the_configured_host(bind_host: str, advertised: str) -> None:
    app = _faust_app(Settings(worker={"bind_host": bind_host}))
    assert app.conf.web_bind == bind_host
    assert app.conf.web_host == advertised  # a wildcard is no address to advertise


def test_the_kafka_client_holds_an_empty_fetch_briefly() -> None:
    """Faust builds its client with a 1,500 ms long poll, and a broker answers one request of a
    connection at a time: every table-recovery step waited that long behind an empty fetch
    (docs/fault-tolerance.md). The worker's client is built with FETCH_MAX_WAIT_MS instead."""

    async def build() -> int:
        app = _faust_app(Settings())
        thread = app.consumer._thread  # type: ignore[attr-defined]
        assert isinstance(thread, ConsumerThread)
        client = thread._create_worker_consumer(app.transport)
        try:
            return int(client._fetch_max_wait_ms)
        finally:
            await client.stop()
            thread.thread_loop.close()  # the client thread's own loop, never started here

    assert asyncio.run(build()) == FETCH_MAX_WAIT_MS <= 200
