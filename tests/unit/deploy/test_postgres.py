"""Where the local PostgreSQL keeps its cluster (no server started here)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.postgres import SERVICE_ACCOUNT, PostgresServer, account_can_reach

pytestmark = pytest.mark.unit


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every account may enter (mode 0755 under /tmp), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="ctriage-pg-unit-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_the_cluster_lives_under_the_run_dir_when_the_server_can_reach_it(
    open_folder: Path,
) -> None:
    server = PostgresServer(open_folder / "run" / "postgres")
    assert server.data_dir == open_folder / "run" / "postgres" / "data"


@pytest.mark.skipif(os.geteuid() != 0, reason="the fallback exists only for root")
def test_as_root_a_private_folder_sends_the_cluster_to_tmp(open_folder: Path) -> None:
    private = open_folder / "private"
    private.mkdir(mode=0o700)
    assert not account_can_reach(private / "run", SERVICE_ACCOUNT)
    assert account_can_reach(open_folder / "run", SERVICE_ACCOUNT)
    server = PostgresServer(private / "run")
    assert server.data_dir.parent == Path(tempfile.gettempdir())
    assert server.data_dir.name.startswith("ctriage-postgres-")
