"""Process plumbing shared by the launchers: pid files, detached spawning, health waits, stopping.

A launcher writes a pid file next to its logs so that another process (``ctriage services down``)
can find the server later. Before it signals anything it checks that the pid still names the
process it started: same start time and the launcher's markers in the command line, so a recycled
pid is never killed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import psutil

from deploy.exceptions import (
    ServiceDependencyMissing,
    ServiceReason,
    ServiceStartError,
    ServiceStopError,
)

logger = logging.getLogger(__name__)

_POLL_INTERVAL_S = 0.25
# psutil adds the kernel's boot time, which some VMs report with a second of jitter between
# reads; a recycled pid would also have to match the command-line markers.
_CREATE_TIME_TOLERANCE_S = 2.0


@dataclass(frozen=True)
class PidRecord:
    """What a pid file holds: the pid, its start time and strings its command line must contain."""

    pid: int
    create_time: float
    markers: tuple[str, ...]

    def to_json(self) -> str:
        """Serialise for the pid file."""
        return json.dumps(
            {"pid": self.pid, "create_time": self.create_time, "markers": list(self.markers)}
        )

    @classmethod
    def from_json(cls, text: str) -> PidRecord:
        """Parse a pid file; raises ``ValueError`` on anything malformed."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("pid file is not a JSON object")
        return cls(
            pid=int(data["pid"]),
            create_time=float(data["create_time"]),
            markers=tuple(str(m) for m in data["markers"]),
        )


class PidFile:
    """A pid file bound to the command-line markers that identify our server process."""

    def __init__(self, path: Path, markers: Sequence[str]) -> None:
        self.path = path
        self.markers = tuple(markers)

    def write(self, pid: int) -> None:
        """Record ``pid`` (and its start time) atomically."""
        record = PidRecord(
            pid=pid, create_time=psutil.Process(pid).create_time(), markers=self.markers
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(record.to_json(), encoding="utf-8")
        tmp.replace(self.path)

    def read(self) -> PidRecord | None:
        """Return the stored record, or ``None`` when the file is absent or unreadable."""
        try:
            return PidRecord.from_json(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as e:
            logger.warning("ignoring malformed pid file %s: %s", self.path, e)
            return None

    def live_process(self) -> psutil.Process | None:
        """Return the recorded process if it is still alive and still ours, else ``None``."""
        record = self.read()
        if record is None:
            return None
        return verified_process(record, self.markers)

    def remove(self) -> None:
        """Delete the pid file if present."""
        self.path.unlink(missing_ok=True)


def verified_process(record: PidRecord, markers: Sequence[str]) -> psutil.Process | None:
    """Return the process named by ``record`` only if start time and command line match."""
    try:
        process = psutil.Process(record.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        if abs(process.create_time() - record.create_time) > _CREATE_TIME_TOLERANCE_S:
            return None
        cmdline = " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    if not all(marker in cmdline for marker in markers):
        return None
    return process


def require_binary(name: str, service: str, hint: str) -> str:
    """Absolute path of ``name`` on PATH, or raise :class:`ServiceDependencyMissing`."""
    found = shutil.which(name)
    if found is None:
        raise ServiceDependencyMissing(
            service, ServiceReason.BINARY_MISSING, f"'{name}' not found on PATH; {hint}"
        )
    return found


def log_tail(path: Path, n_lines: int = 40) -> str:
    """Last ``n_lines`` of a log file (empty string when there is none)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return "\n".join(lines[-n_lines:])


def port_is_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Tell whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def spawn_detached(
    cmd: Sequence[str],
    log_path: Path,
    cwd: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session (it outlives us), stdout and stderr appended to a log.

    ``user``: run as this OS account (needs root; PostgreSQL refuses to run as root).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("starting %s", " ".join(cmd))
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            user=user,
            group=user,
        )


def wait_until_healthy(
    service: str,
    process: subprocess.Popen[bytes],
    is_healthy: Callable[[], bool],
    timeout_s: float,
    logs: Sequence[Path],
) -> float:
    """Poll ``is_healthy`` until true; return seconds waited.

    Raises :class:`ServiceStartError` (with the log tails) when the process exits or the time is up;
    in the timeout case the process is stopped first so nothing is left behind.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        code = process.poll()
        if code is not None:
            raise ServiceStartError(
                service,
                ServiceReason.EXITED_EARLY,
                f"process {process.pid} exited with code {code}{_tails(logs)}",
            )
        if is_healthy():
            return time.monotonic() - started
        if time.monotonic() > deadline:
            stop_popen(service, process, timeout_s=10)
            raise ServiceStartError(
                service,
                ServiceReason.START_TIMEOUT,
                f"not healthy after {timeout_s:.0f} s (process {process.pid}){_tails(logs)}",
            )
        time.sleep(_POLL_INTERVAL_S)


def _tails(logs: Sequence[Path]) -> str:
    parts = [f"\n--- last lines of {p} ---\n{tail}" for p in logs if (tail := log_tail(p))]
    return "".join(parts)


def stop_popen(service: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM a child we spawned, SIGKILL its session after ``timeout_s``; always reaps it."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
        return
    except subprocess.TimeoutExpired:
        logger.warning(
            "%s pid %d ignored SIGTERM for %.0f s; killing", service, process.pid, timeout_s
        )
    _kill_session(process.pid)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired as e:
        raise ServiceStopError(
            service, ServiceReason.STOP_FAILED, f"pid {process.pid} survived SIGKILL"
        ) from e


def stop_process(service: str, process: psutil.Process, timeout_s: float) -> None:
    """SIGTERM a verified process started by another launcher, SIGKILL it after ``timeout_s``."""
    try:
        process.terminate()
    except psutil.NoSuchProcess:
        return
    _, alive = psutil.wait_procs([process], timeout=timeout_s)
    if not alive:
        return
    logger.warning("%s pid %d ignored SIGTERM for %.0f s; killing", service, process.pid, timeout_s)
    _kill_session(process.pid)
    _, alive = psutil.wait_procs([process], timeout=10)
    if alive:
        raise ServiceStopError(
            service, ServiceReason.STOP_FAILED, f"pid {process.pid} survived SIGKILL"
        )


def _kill_session(pid: int) -> None:
    """SIGKILL ``pid`` and, when it leads its own process group (we spawned it so), its helpers."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def rss_mb(process: psutil.Process, include_children: bool = False) -> float | None:
    """Resident memory of ``process`` (optionally plus its children) in MiB."""
    try:
        procs = [process, *(process.children(recursive=True) if include_children else [])]
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total / 2**20
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


class LocalService:
    """What every local launcher shares: a pid file, a child process, stop, context manager.

    Subclasses set ``service`` (the name in errors and logs), ``pid_file`` and implement
    ``start``; ``_process`` holds the child when this object started it.
    """

    service: str
    run_dir: Path
    pid_file: PidFile
    _process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 90) -> None:
        """Launch the service and wait until it is healthy."""
        raise NotImplementedError

    def is_healthy(self) -> bool:
        """Tell whether the service answers its health check."""
        raise NotImplementedError

    def _refuse_start(self, host: str, ports: Sequence[int], serves: str) -> None:
        """Raise when our service already runs or another process holds one of ``ports``."""
        running = self.pid_file.live_process()
        if running is not None:
            raise ServiceStartError(
                self.service, ServiceReason.ALREADY_RUNNING, f"pid {running.pid} serves {serves}"
            )
        for busy in ports:
            if port_is_open(host, busy):
                raise ServiceStartError(
                    self.service, ServiceReason.PORT_IN_USE, f"{host}:{busy} is already in use"
                )

    def _launch(
        self,
        cmd: Sequence[str],
        log_path: Path,
        timeout_s: float,
        logs: Sequence[Path] = (),
        env: dict[str, str] | None = None,
        user: str | None = None,
        cwd: Path | None = None,
    ) -> float:
        """Spawn ``cmd`` detached, record its pid, wait until healthy; return seconds waited.

        On failure the pid file is removed and the launcher's ``ServiceStartError`` (with the
        tails of ``logs``, default ``log_path``) propagates.
        """
        self._process = spawn_detached(cmd, log_path, cwd=cwd or self.run_dir, env=env, user=user)
        self.pid_file.write(self._process.pid)
        try:
            waited = wait_until_healthy(
                self.service, self._process, self.is_healthy, timeout_s, logs=logs or (log_path,)
            )
        except ServiceStartError:
            self._process = None
            self.pid_file.remove()
            raise
        logger.info("%s ready after %.1f s (pid %d)", self.service, waited, self._process.pid)
        return waited

    @property
    def pid(self) -> int | None:
        """Pid of the running service (started here or found through the pid file)."""
        process = self.pid_file.live_process()
        return process.pid if process is not None else None

    def stop(self, timeout_s: float = 30) -> None:
        """Stop our service: SIGTERM, wait, SIGKILL; a no-op when it is not running."""
        if self._process is not None:
            stop_popen(self.service, self._process, timeout_s)
            self._process = None
        else:
            process = self.pid_file.live_process()
            if process is not None:
                stop_process(self.service, process, timeout_s)
        self.pid_file.remove()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
