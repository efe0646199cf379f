"""TritonQuantifier's error mapping against a scripted HTTP stand-in (no Triton needed).

The stand-in answers the two endpoints the client uses (``/v2/models/<m>/infer`` and
``/ready``) with the status codes a real server gives; the real server is exercised in
tests/integration/test_triton_quantify.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from inference.client import DEFAULT_MODEL, TritonQuantifier, output_name
from inference.exceptions import (
    InferenceError,
    InferenceRejected,
    InvalidVolume,
    TritonError,
    TritonServerError,
    TritonTimeout,
    TritonUnavailable,
)

pytestmark = pytest.mark.unit

VOLUME = np.zeros((4, 8, 8), dtype=np.int16)
SPACING = (1.0, 1.0, 1.0)


class Script:
    """What the stand-in answers: infer status, ready status, delay before answering."""

    infer_status = 400
    ready_status = 200
    delay_s = 0.0


class Handler(BaseHTTPRequestHandler):
    script = Script()

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _reply(self, status: int, body: dict[str, object]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._reply(
            self.script.ready_status,
            {} if self.script.ready_status == 200 else {"error": "not ready"},
        )

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(self.script.delay_s)
        self._reply(self.script.infer_status, {"error": f"scripted {self.script.infer_status}"})


@pytest.fixture()
def stand_in() -> Iterator[tuple[str, Script]]:
    script = Script()
    handler = type("ScriptedHandler", (Handler,), {"script": script})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_bad_request_is_rejected(stand_in: tuple[str, Script]) -> None:
    url, _ = stand_in
    with pytest.raises(InferenceRejected) as caught:
        TritonQuantifier(url, timeout_s=5).quantify_array(VOLUME, SPACING)
    message = str(caught.value)
    assert "scripted 400" in message and url in message and DEFAULT_MODEL in message
    assert "timeout 5 s" in message
    assert caught.value.__cause__ is not None


def test_400_for_a_model_that_is_not_ready_is_a_server_error(
    stand_in: tuple[str, Script],
) -> None:
    url, script = stand_in
    script.ready_status = 400
    with pytest.raises(TritonServerError):
        TritonQuantifier(url, timeout_s=5).quantify_array(VOLUME, SPACING)


def test_500_is_a_server_error(stand_in: tuple[str, Script]) -> None:
    url, script = stand_in
    script.infer_status = 500
    with pytest.raises(TritonServerError, match="HTTP 500"):
        TritonQuantifier(url, timeout_s=5).quantify_array(VOLUME, SPACING)


def test_slow_server_times_out(stand_in: tuple[str, Script]) -> None:
    url, script = stand_in
    script.delay_s = 1.0
    started = time.perf_counter()
    with pytest.raises(TritonTimeout) as caught:
        TritonQuantifier(url, timeout_s=0.2).quantify_array(VOLUME, SPACING)
    assert time.perf_counter() - started < 0.9
    assert "timeout 0.2 s" in str(caught.value)


def test_closed_port_is_unavailable() -> None:
    quantifier = TritonQuantifier(f"127.0.0.1:{closed_port()}", timeout_s=2)
    with pytest.raises(TritonUnavailable) as caught:
        quantifier.quantify_array(VOLUME, SPACING)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    with pytest.raises(TritonUnavailable):
        quantifier.model_version()
    assert quantifier.is_ready() is False


def test_ready_stand_in(stand_in: tuple[str, Script]) -> None:
    url, _ = stand_in
    with TritonQuantifier(f"http://{url}") as quantifier:
        assert quantifier.url == url
        assert quantifier.is_ready() is True
        quantifier.check_ready()


def test_inputs_checked_before_sending() -> None:
    quantifier = TritonQuantifier(f"127.0.0.1:{closed_port()}")
    with pytest.raises(InvalidVolume):
        quantifier.quantify_array(VOLUME.astype(np.float32), SPACING)
    with pytest.raises(ValueError, match="timeout_s"):
        TritonQuantifier("127.0.0.1:1", timeout_s=0)


def test_hierarchy_and_names() -> None:
    for cls in (TritonUnavailable, TritonTimeout, TritonServerError, InferenceRejected):
        assert issubclass(cls, TritonError) and issubclass(cls, InferenceError)
    assert output_name("lesion_percent") == "LESION_PERCENT"
    assert "lesion_unet" in repr(TritonQuantifier("h:1"))  # the learned model by default
