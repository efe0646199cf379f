"""Pushing dashboards, against a stand-in Grafana HTTP server (NOT a live Grafana).

Grafana cannot be installed on this machine. The stand-in is a real HTTP server on 127.0.0.1 that
implements only ``POST /api/dashboards/db`` the way Grafana's HTTP API documents it: it records
the body and the Authorization header and answers with a chosen status. It proves the request
grafana-client sends and how errors map, not that a real Grafana accepts the model.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dashboards.catalog import DASHBOARDS
from dashboards.client import push_dashboard
from dashboards.ed_triage import build_ed_triage
from dashboards.exceptions import DashboardPushError, PushFailureReason
from streams.cli.dashboards import EXIT_PUSH_FAILED, app

pytestmark = pytest.mark.unit

TOKEN = "glsa_test-token"
DASHBOARD_PATHS = ("/api/dashboards/db", "/grafana/api/dashboards/db")


@dataclass
class Recorded:
    path: str
    authorization: str | None
    body: dict[str, Any]


@dataclass
class StandInGrafana:
    """What the stand-in answers, and what it was sent."""

    url: str
    status: int = 200
    answer: dict[str, Any] | None = None
    delay_s: float = 0.0
    requests: list[Recorded] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def grafana() -> Iterator[StandInGrafana]:
    stand_in = StandInGrafana(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            stand_in.requests.append(Recorded(self.path, self.headers.get("Authorization"), body))
            if stand_in.delay_s:
                stand_in.release.wait(stand_in.delay_s)
            if self.path not in DASHBOARD_PATHS:
                self._reply(404, {"message": "Not found"})
                return
            uid = body.get("dashboard", {}).get("uid")
            default = {"status": "success", "uid": uid, "version": 1, "url": f"/d/{uid}/x"}
            self._reply(stand_in.status, stand_in.answer or default)

        def _reply(self, status: int, answer: dict[str, Any]) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield stand_in
    stand_in.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_push_upserts_by_uid_with_a_bearer_token(grafana: StandInGrafana) -> None:
    model = build_ed_triage()
    pushed = push_dashboard(grafana.url, TOKEN, model, folder_uid="ctriage")
    assert (pushed.uid, pushed.version) == ("ctriage-ed-triage", 1)
    [request] = grafana.requests
    assert request.path == "/api/dashboards/db"
    assert request.authorization == f"Bearer {TOKEN}"
    assert request.body["overwrite"] is True
    assert request.body["folderUid"] == "ctriage"
    assert request.body["dashboard"] == {**model, "id": None}


def test_push_keeps_a_grafana_sub_path(grafana: StandInGrafana) -> None:
    push_dashboard(grafana.url + "/grafana", TOKEN, build_ed_triage())
    assert grafana.requests[0].path == "/grafana/api/dashboards/db"
    assert "folderUid" not in grafana.requests[0].body


@pytest.mark.parametrize(
    ("status", "answer", "reason"),
    [
        (401, {"message": "invalid API key"}, PushFailureReason.UNAUTHORIZED),
        (403, {"message": "Access denied"}, PushFailureReason.FORBIDDEN),
        (
            412,
            {"message": "The dashboard has been changed by someone else", "status": "v"},
            PushFailureReason.PRECONDITION_FAILED,
        ),
        (400, {"message": "Dashboard title cannot be empty"}, PushFailureReason.BAD_REQUEST),
        (500, {"message": "database is locked"}, PushFailureReason.SERVER_ERROR),
    ],
)
def test_refusals_become_typed_errors(
    grafana: StandInGrafana, status: int, answer: dict[str, Any], reason: PushFailureReason
) -> None:
    grafana.status, grafana.answer = status, answer
    with pytest.raises(DashboardPushError) as caught:
        push_dashboard(grafana.url, TOKEN, build_ed_triage(), overwrite=False)
    assert caught.value.reason is reason
    assert caught.value.status_code == status
    assert caught.value.uid == "ctriage-ed-triage"
    assert answer["message"] in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert grafana.requests[0].body["overwrite"] is False


def test_unreachable_grafana_is_a_typed_error() -> None:
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DashboardPushError) as caught:
        push_dashboard(f"http://127.0.0.1:{port}", TOKEN, build_ed_triage(), timeout_s=2)
    assert caught.value.reason is PushFailureReason.UNREACHABLE
    assert caught.value.status_code == 0


def test_slow_grafana_times_out(grafana: StandInGrafana) -> None:
    grafana.delay_s = 5.0
    with pytest.raises(DashboardPushError) as caught:
        push_dashboard(grafana.url, TOKEN, build_ed_triage(), timeout_s=0.3)
    assert caught.value.reason is PushFailureReason.TIMEOUT


def test_a_model_without_uid_is_refused_before_sending(grafana: StandInGrafana) -> None:
    model = {k: v for k, v in build_ed_triage().items() if k != "uid"}
    with pytest.raises(DashboardPushError) as caught:
        push_dashboard(grafana.url, TOKEN, model)
    assert caught.value.reason is PushFailureReason.INVALID_MODEL
    assert grafana.requests == []


def test_cli_build_writes_one_file_per_dashboard(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["build", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "out").glob("*.json"))
    assert [p.stem for p in written] == sorted(build()["uid"] for build in DASHBOARDS.values())
    models = {build()["uid"]: build() for build in DASHBOARDS.values()}
    for path in written:
        assert json.loads(path.read_text(encoding="utf-8")) == models[path.stem]
        assert str(path) in result.output


def test_cli_list_names_every_dashboard() -> None:
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    assert all(name in result.output for name in DASHBOARDS)


def test_cli_push_reads_the_token_from_the_environment(grafana: StandInGrafana) -> None:
    result = CliRunner().invoke(
        app, ["push", "--url", grafana.url, "--folder-uid", "ctriage"], env={"GRAFANA_TOKEN": TOKEN}
    )
    assert result.exit_code == 0, result.output
    assert len(grafana.requests) == len(DASHBOARDS)
    assert {r.authorization for r in grafana.requests} == {f"Bearer {TOKEN}"}
    assert "ctriage-ed-triage" in result.output


def test_cli_push_failure_exits_non_zero_with_the_reason(grafana: StandInGrafana) -> None:
    grafana.status, grafana.answer = 401, {"message": "invalid API key"}
    result = CliRunner().invoke(app, ["push", "--url", grafana.url, "--token", "wrong"])
    assert result.exit_code == EXIT_PUSH_FAILED
    assert "push failed: dashboard 'ctriage-ed-triage'" in result.output
    assert "unauthorized (HTTP 401)" in result.output
    assert "invalid API key" in result.output
