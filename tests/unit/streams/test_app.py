"""The Faust app's web port binds the configured host (Prometheus must reach a container's)."""

from __future__ import annotations

import socket

import pytest

from streams.app import _faust_app
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
