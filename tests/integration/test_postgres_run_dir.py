"""The local PostgreSQL keeps its cluster under its run dir (even when we run as root)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from deploy.exceptions import ServiceError
from deploy.postgres import PostgresServer

pytestmark = pytest.mark.integration


def test_a_started_server_keeps_its_data_in_the_run_dir(port_offset: int) -> None:
    # a folder the postgres account may enter, as the default run dir (.ctriage/run) is
    folder = Path(tempfile.mkdtemp(prefix="ctriage-pg-it-"))
    folder.chmod(0o755)
    server = PostgresServer(folder / "run" / "postgres", port=21532 + port_offset, durable=False)
    try:
        server.start(timeout_s=60)
        assert (folder / "run" / "postgres" / "data" / "PG_VERSION").is_file()
        dsn = f"host=127.0.0.1 port={server.port} user=ctriage dbname=ctriage"
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        assert row is not None and Path(row[0]) == folder / "run" / "postgres" / "data"
    except ServiceError as e:
        pytest.fail(f"PostgreSQL did not start: {e}", pytrace=False)
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
