"""``ctriage admin-api`` as a child process for the integration tests (ready on /health)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from streams.demo import worker_env
from streams.settings import Settings

VIEWER_TOKEN = "viewer-token-for-tests-only"
ADMIN_TOKEN = "admin-token-for-tests-only"


def admin_tokens() -> list[dict[str, str]]:
    """A viewer and a threshold-admin; the admin's token given as its SHA-256 only."""
    import hashlib

    return [
        {"user": "vera", "role": "viewer", "token": VIEWER_TOKEN},
        {
            "user": "ana",
            "role": "threshold-admin",
            "token_sha256": hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest(),
        },
    ]


class AdminApiProcess:
    """The admin API server, run as a user runs it."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.base_url = f"http://127.0.0.1:{settings.admin.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the server and wait for ``/health``."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = worker_env(self.settings)  # exactly these settings, nothing from our CTRIAGE_*
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from streams.cli import main; main()", "admin-api"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"admin API exited early:\n{self.log_tail()}")
            try:
                if request(self.base_url, "GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"admin API not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate the server."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self) -> str:
        """The end of the server's log."""
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def request(
    base_url: str,
    method: str,
    path: str,
    token: str | None = None,
    body: Any = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    """One HTTP call; returns (status, parsed JSON body)."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read() or b"null")
