"""Launch a local PostgreSQL (Debian package ``postgresql``) for the reporting store.

Its own cluster, never the packaged one: ``initdb`` on first start, then ``postgres`` on an
explicit loopback port, TCP only (no Unix socket), trust authentication for loopback clients of
one role (``ctriage``); the database is created when missing. ``ctriage services up`` starts it
for the worker and the dashboards; the tests' ``postgres_server`` fixture starts one per session
(``durable=False``: fsync off) and gives each test module its own database
(:meth:`PostgresServer.create_database`). Layout::

    run_dir/postgres.log  run_dir/postgres.pid  <data_dir>/  (the cluster)

The cluster lives in ``run_dir/data``. PostgreSQL refuses to run as root: when we are root, the
cluster belongs to the ``postgres`` account (created by the Debian package), which must be able
to reach it. Where a folder above ``run_dir`` shuts that account out (root's private test folders,
mode 0700) the cluster goes to ``$TMPDIR/ctriage-postgres-<hash of run_dir>`` instead, and the
start says so. :meth:`PostgresServer.purge` deletes it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from deploy.exceptions import ServiceDependencyMissing, ServiceReason, ServiceStartError
from deploy.process import LocalService, PidFile

logger = logging.getLogger(__name__)

SERVICE = "postgres"
HOST = "127.0.0.1"
INSTALL_HINT = "install it with: apt-get install postgresql"
SERVICE_ACCOUNT = "postgres"  # Debian's account for the server when we run as root
ROLE = "ctriage"


def local_store_url(port: int, database: str = "ctriage", user: str = ROLE) -> str:
    """SQLAlchemy URL (psycopg 3 driver) of ``database`` on the local server on ``port``."""
    return f"postgresql+psycopg://{user}@{HOST}:{port}/{database}"


def postgres_bin_dir() -> Path:
    """The folder of ``postgres`` on PATH, else the newest ``/usr/lib/postgresql/<major>/bin``."""
    on_path = shutil.which("postgres")
    if on_path is not None:
        return Path(on_path).resolve().parent
    majors = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not majors:
        raise ServiceDependencyMissing(
            SERVICE, ServiceReason.BINARY_MISSING, f"postgres not found; {INSTALL_HINT}"
        )
    return majors[-1].parent


def account_can_reach(path: Path, account: str) -> bool:
    """Whether OS ``account`` may enter every existing folder from ``/`` down to ``path``.

    Folders still missing are created by us with the usual umask (0755), so they count as open.
    """
    try:
        entry = pwd.getpwnam(account)
    except KeyError:  # no such account: the start fails later with its own message
        return False
    for folder in [*reversed(path.parents), path]:
        try:
            info = folder.stat()
        except FileNotFoundError:
            break
        if info.st_uid == entry.pw_uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid == entry.pw_gid:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True


class PostgresServer(LocalService):
    """A local PostgreSQL cluster on an explicit loopback port, with one database."""

    def __init__(
        self,
        run_dir: Path,
        port: int = 15432,
        user: str = ROLE,
        database: str = "ctriage",
        durable: bool = True,
    ) -> None:
        self.run_dir = run_dir.resolve()
        self.port = port
        self.user = user
        self.database = database
        self.durable = durable  # False (tests): fsync off, much faster, loses data on power cut
        self.as_account = SERVICE_ACCOUNT if os.geteuid() == 0 else None
        self.data_dir = self.run_dir / "data"
        if self.as_account is not None and not account_can_reach(self.run_dir, self.as_account):
            digest = hashlib.sha256(str(self.run_dir).encode()).hexdigest()[:12]
            self.data_dir = Path(tempfile.gettempdir()) / f"ctriage-postgres-{digest}"
        self.log_path = self.run_dir / "postgres.log"
        self.service = SERVICE
        self.pid_file = PidFile(
            self.run_dir / "postgres.pid", markers=("postgres", str(self.data_dir))
        )
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the database (psycopg 3 driver)."""
        return self.url_of(self.database)

    def url_of(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return local_store_url(self.port, database, self.user)

    def start(self, timeout_s: float = 60) -> None:
        """Create the cluster if needed, launch the server, wait for it, create the database."""
        self._refuse_start(HOST, (self.port,), self.url)
        bin_dir = postgres_bin_dir()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.data_dir.is_relative_to(self.run_dir):
            logger.info(
                "postgres data in %s: the %s account cannot enter a folder above %s",
                self.data_dir, self.as_account, self.run_dir,
            )  # fmt: skip
        if not (self.data_dir / "PG_VERSION").is_file():
            self._initdb(bin_dir)
        options = [
            "-c", f"listen_addresses={HOST}",
            "-c", "unix_socket_directories=",  # TCP on loopback only
            "-c", "max_connections=100",
        ]  # fmt: skip
        if not self.durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
        command = [str(bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        self._launch(
            [*command, *options], self.log_path, timeout_s, user=self.as_account, cwd=self.data_dir
        )
        self.create_database(self.database)

    def stop(self, timeout_s: float = 30) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, drop clients), then the base stop."""
        process = self.pid_file.live_process()
        if process is not None:
            try:
                process.send_signal(signal.SIGINT)
                process.wait(timeout=timeout_s)
            except psutil.NoSuchProcess:
                pass
            except psutil.TimeoutExpired:
                logger.warning("postgres fast shutdown took over %.0f s; terminating", timeout_s)
        super().stop(timeout_s=timeout_s)

    def purge(self) -> None:
        """Delete the cluster's files (call it with the server stopped)."""
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def is_healthy(self) -> bool:
        """Tell whether the server accepts a connection of our role."""
        try:
            with psycopg.connect(self._dsn("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self, database: str) -> str:
        """Create ``database`` unless it exists; return its SQLAlchemy URL."""
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        return self.url_of(database)

    def _dsn(self, database: str) -> str:
        return f"host={HOST} port={self.port} user={self.user} dbname={database}"

    def _initdb(self, bin_dir: Path) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.as_account is not None:
            account = pwd.getpwnam(self.as_account)
            os.chown(self.data_dir, account.pw_uid, account.pw_gid)
        self.data_dir.chmod(0o700)
        result = subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                "--auth=trust",  # loopback only (listen_addresses): a local store
                "--encoding=UTF8",
                "--no-locale",
            ],  # fmt: skip
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            user=self.as_account,
            group=self.as_account,
            cwd=self.data_dir,
        )
        if result.returncode != 0:
            raise ServiceStartError(
                SERVICE,
                ServiceReason.STORAGE_FORMAT_FAILED,
                f"initdb -D {self.data_dir} failed: {result.stderr[-2000:]}",
            )
