"""The demo as a newcomer runs it (reduced size): real services up, alerts, summary, clean stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

# below the kernel's ephemeral range (32768-60999): an outgoing connection can take a port there
# just before a service binds it (seen once: PostgreSQL "Address already in use")
KAFKA, CONTROLLER, TRITON, METRICS, WEB = 31192, 31193, 31100, 31110, 31166
POSTGRES, PROMETHEUS = 31442, 31190


def _ports(offset: int) -> dict[str, str]:
    return {
        "CTRIAGE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{KAFKA + offset}",
        "CTRIAGE_KAFKA__CONTROLLER_PORT": str(CONTROLLER + offset),
        "CTRIAGE_TRITON__HTTP_PORT": str(TRITON + offset),
        "CTRIAGE_TRITON__GRPC_PORT": str(TRITON + 1 + offset),
        "CTRIAGE_TRITON__METRICS_PORT": str(TRITON + 2 + offset),
        "CTRIAGE_WORKER__METRICS_PORT": str(METRICS + offset),
        "CTRIAGE_WORKER__WEB_PORT": str(WEB + offset),
        "CTRIAGE_STORE__LOCAL_PORT": str(POSTGRES + offset),
        "CTRIAGE_MONITORING__PROMETHEUS_PORT": str(PROMETHEUS + offset),
    }


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.usefixtures("local_postgres_purged")
def test_demo_reduced(tmp_path: Path, port_offset: int) -> None:
    env = {
        **os.environ,
        **_ports(port_offset),
        "CTRIAGE_RUN_DIR": str(tmp_path / "run"),
        "COLUMNS": "200",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "demo",
            "--patients",
            "8",
            "--speed",
            "86400",
            "--matrix",
            "64",
            "--slices",
            "32",
            "--timeout-s",
            "400",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-5000:]
    assert "Pipeline summary" in out
    assert re.search(r"risk records \(one per study\)[\s│|]+8\b", out), out[-3000:]
    assert re.search(r"end-to-end latency p50 / p95[\s│|]+[\d.]+ s / [\d.]+ s", out)
    assert "ICU occupancy forecast" in out
    # the ventilators next to the beds: the census bundle has ventilated ICU occupants
    assert "Ventilators in use forecast" in out
    assert re.search(r"capacity \d+ ventilators; [1-9]\d* in use now", out), out[-3000:]
    assert "SYNTHETIC" in out
    assert "stopped" in out
    # services stopped cleanly: nothing listens on the demo's ports any more
    assert not _port_open(KAFKA + port_offset)
    assert not _port_open(TRITON + port_offset)
    assert not _port_open(METRICS + port_offset)
    assert not _port_open(POSTGRES + port_offset)
    assert not _port_open(PROMETHEUS + port_offset)


@pytest.mark.usefixtures("local_postgres_purged")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_demo_interrupted_stops_services(tmp_path: Path, port_offset: int, sig: int) -> None:
    """Ctrl-C (or a SIGTERM from a supervisor) in the middle of a replay stops every service."""
    offset = port_offset + 7
    env = {
        **os.environ,
        **_ports(offset),
        "CTRIAGE_RUN_DIR": str(tmp_path / "run"),
        "COLUMNS": "200",
    }
    command = [sys.executable, "-m", "streams.cli", "demo", "--patients", "12"]
    command += ["--speed", "600", "--matrix", "64", "--slices", "32"]
    demo = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert demo.stdout is not None
    seen: list[str] = []
    for line in demo.stdout:
        seen.append(line)
        if "replaying" in line:
            break
    demo.send_signal(sig)
    rest, _ = demo.communicate(timeout=120)
    out = "".join(seen) + rest
    assert demo.returncode == 130, out[-3000:]
    assert "interrupted; stopping services" in out
    assert "Kafka, Triton, PostgreSQL and Prometheus stopped" in out
    assert "ECONNREFUSED" not in out
    for port in (KAFKA, TRITON, METRICS, POSTGRES, PROMETHEUS):
        assert not _port_open(port + offset)
