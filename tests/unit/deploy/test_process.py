"""Pid files, process identity checks, health waits and stopping, on throwaway processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from deploy.exceptions import ServiceReason, ServiceStartError
from deploy.process import (
    PidFile,
    PidRecord,
    log_tail,
    port_is_open,
    spawn_detached,
    stop_popen,
    stop_process,
    wait_until_healthy,
)

pytestmark = pytest.mark.unit

SLEEPER = "import time; time.sleep(120)  # ctriage-test-sleeper"
STUBBORN = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ignoring SIGTERM', flush=True); time.sleep(120)"
)


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = spawn_detached([sys.executable, "-c", SLEEPER], tmp_path / "sleeper.log", tmp_path)
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_pid_record_round_trips() -> None:
    record = PidRecord(pid=42, create_time=1700000000.25, markers=("kafka.Kafka", "/x"))
    assert PidRecord.from_json(record.to_json()) == record


def test_malformed_or_missing_pid_file_reads_as_none(tmp_path: Path) -> None:
    pid_file = PidFile(tmp_path / "x.pid", markers=("x",))
    assert pid_file.read() is None
    pid_file.path.write_text("not json", encoding="utf-8")
    assert pid_file.read() is None
    assert pid_file.live_process() is None


def test_live_process_is_found_when_markers_match(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    pid_file = PidFile(tmp_path / "s.pid", markers=("ctriage-test-sleeper",))
    pid_file.write(sleeper.pid)
    process = pid_file.live_process()
    assert process is not None
    assert process.pid == sleeper.pid


def test_a_pid_with_another_command_line_is_not_ours(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    pid_file = PidFile(tmp_path / "s.pid", markers=("kafka.Kafka",))
    pid_file.write(sleeper.pid)
    assert pid_file.live_process() is None


def test_a_recycled_pid_is_not_ours(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    markers = ("ctriage-test-sleeper",)
    started = psutil.Process(sleeper.pid).create_time()
    record = PidRecord(pid=sleeper.pid, create_time=started - 3600, markers=markers)
    (tmp_path / "s.pid").write_text(record.to_json(), encoding="utf-8")
    assert PidFile(tmp_path / "s.pid", markers).live_process() is None


def test_stopping_a_foreign_pid_file_never_signals_the_process(tmp_path: Path) -> None:
    # the pid file names *this* pytest process, whose command line lacks the markers
    from deploy.kafka import KafkaBroker

    broker = KafkaBroker(tmp_path, tmp_path / "cache", port=1, controller_port=2)
    PidFile(broker.pid_file.path, markers=()).write(os.getpid())
    assert broker.pid is None
    broker.stop()
    assert not broker.pid_file.path.exists()


def test_stop_process_terminates_a_verified_process(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    stop_process("test", psutil.Process(sleeper.pid), timeout_s=10)
    assert not psutil.pid_exists(sleeper.pid)  # psutil reaped our child while waiting


def test_stop_popen_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    process = spawn_detached([sys.executable, "-c", STUBBORN], log, tmp_path)
    wait_until_healthy("test", process, lambda: "ignoring" in log_tail(log), 10, logs=(log,))
    stop_popen("test", process, timeout_s=0.5)
    assert process.returncode == -9


def test_early_exit_is_reported_with_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "crash.log"
    script = "import sys; print('Address already in use', flush=True); sys.exit(3)"
    process = spawn_detached([sys.executable, "-c", script], log, tmp_path)
    with pytest.raises(ServiceStartError) as raised:
        wait_until_healthy("test", process, lambda: False, timeout_s=30, logs=(log,))
    assert raised.value.reason is ServiceReason.EXITED_EARLY
    assert "code 3" in raised.value.detail
    assert "Address already in use" in raised.value.detail


def test_timeout_stops_the_process_and_reports(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    with pytest.raises(ServiceStartError) as raised:
        wait_until_healthy("test", sleeper, lambda: False, timeout_s=0.3, logs=())
    assert raised.value.reason is ServiceReason.START_TIMEOUT
    assert sleeper.poll() is not None


def test_log_tail_returns_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)), encoding="utf-8")
    assert log_tail(log, 2) == "line 98\nline 99"
    assert log_tail(tmp_path / "absent.log") == ""


def test_port_is_open_sees_a_listener() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_is_open("127.0.0.1", port)
    assert not port_is_open("127.0.0.1", port)
