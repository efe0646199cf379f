"""What a stalled crash or chaos test prints about the store: a session waiting on a row lock."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from sqlalchemy.engine import make_url
from stream_checks import database_activity, wait_for

pytestmark = pytest.mark.integration


def test_a_session_waiting_on_a_row_lock_is_shown_with_its_blocker(postgres_server) -> None:
    url = postgres_server.create_database(f"stall_report_{uuid.uuid4().hex[:8]}")
    parts = make_url(url)
    dsn = f"host={parts.host} port={parts.port} user={parts.username} dbname={parts.database}"
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE held (id int PRIMARY KEY, v int)")
        setup.execute("INSERT INTO held VALUES (1, 0)")
    holder = psycopg.connect(dsn)
    holder.execute("UPDATE held SET v = 1 WHERE id = 1")  # row lock, transaction left open
    holder_pid = holder.info.backend_pid

    def blocked_update() -> None:
        with psycopg.connect(dsn) as waiter:
            waiter.execute("UPDATE held SET v = 2 WHERE id = 1")

    waiter = threading.Thread(target=blocked_update)
    waiter.start()
    try:
        wait_for(lambda: "wait Lock/" in database_activity(url), 30, "a lock wait")
        report = database_activity(url)
        waiting = next(line for line in report.splitlines() if "wait Lock/" in line)
        assert f"blocked by [{holder_pid}]" in waiting
        assert "UPDATE held SET v = 2" in waiting
        assert f"pid {holder_pid} idle in transaction" in report
    finally:
        holder.rollback()
        holder.close()
        waiter.join(timeout=30)


def test_a_store_that_is_not_postgresql_says_so() -> None:
    assert "not PostgreSQL" in database_activity("sqlite:///:memory:")
