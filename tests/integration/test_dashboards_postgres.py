"""Every SQL query of the ICU forecast dashboard runs on a real PostgreSQL holding real rows.

The rows are written by the worker's own sink (:func:`streams.agents.sinks.write_forecast`) into
the store schema created by :func:`dashboards.store.create_schema`, in a database of the session's
PostgreSQL server (``postgres_server`` fixture). Grafana's macros are expanded as its PostgreSQL
datasource does (``$__timeFilter`` becomes a BETWEEN on the dashboard's time range); Grafana
itself cannot be installed here, so rendering is not checked.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from psycopg.rows import dict_row
from sqlalchemy import Engine

from dashboards import icu_forecast, store
from streams.agents.capacity import forecast_from_census
from streams.agents.sinks import write_forecast

pytestmark = pytest.mark.integration

NOW = datetime(2020, 11, 2, 8, tzinfo=UTC)
RANGE = ("2020-10-03T08:00:00Z", "2020-11-16T08:00:00Z")  # now-30d .. now+14d
MODEL = icu_forecast.build_icu_forecast()


def _census(clock: datetime, occupants: int, ventilated: int) -> dict[str, Any]:
    return {
        "occupants": {f"p{i}": (clock - timedelta(days=i)).isoformat() for i in range(occupants)},
        "pipeline": {"q": [0.7, clock.isoformat()]},
        "ventilated": {f"p{i}": (clock - timedelta(days=i)).isoformat() for i in range(ventilated)},
        "at_risk": {"q": [0.7, clock.isoformat()]},
        "admissions": {(clock - timedelta(days=k)).date().isoformat(): 1 for k in range(1, 15)},
        "clock": clock.isoformat(),
    }


@pytest.fixture(scope="module")
def engine(postgres_server) -> Engine:  # type: ignore[no-untyped-def]
    engine = store.make_engine(postgres_server.create_database("icu_dashboard_it"))
    store.create_schema(engine)
    for days_ago, occupants in ((2, 4), (1, 5), (0, 7)):
        clock = NOW - timedelta(days=days_ago)
        census = _census(clock, occupants, 3)
        write_forecast(engine, forecast_from_census("h1", census, 8, unit="icu-a", ventilators=4))
        # a redelivered forecast is upserted, not duplicated
        write_forecast(engine, forecast_from_census("h1", census, 8, unit="icu-a", ventilators=4))
    write_forecast(engine, forecast_from_census("h1", _census(NOW, 2, 1), 5, ventilators=2))
    write_forecast(engine, forecast_from_census("h2", _census(NOW, 9, 6), 10, ventilators=6))
    yield engine
    engine.dispose()


def expand(sql: str, unit: str = "icu-a") -> str:
    """What Grafana's PostgreSQL datasource sends for this dashboard, time range and variables."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 BETWEEN '{RANGE[0]}' AND '{RANGE[1]}'", sql)
    sql = sql.replace("$hospital", "h1").replace("$unit", unit)
    assert "$" not in sql, sql
    return sql


def query(engine: Engine, sql: str) -> list[dict[str, Any]]:
    """Run SQL as Grafana does: as text, no bind parameters (so ``%`` in an alias is literal)."""
    with engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor(row_factory=dict_row)  # type: ignore[union-attr]
        cursor.execute(sql)
        return list(cursor.fetchall())


def _targets() -> list[tuple[str, str]]:
    queries = [(f"variable {v['name']}", v["query"]) for v in MODEL["templating"]["list"]
               if v["type"] == "query"]  # fmt: skip
    for panel in MODEL["panels"]:
        queries += [(f"{panel['title']}/{t['refId']}", t["rawSql"]) for t in panel["targets"]]
    return queries


@pytest.mark.parametrize(("where", "sql"), _targets(), ids=lambda v: str(v)[:50])
@pytest.mark.parametrize("unit", ["icu-a", icu_forecast.HOSPITAL_ICU])
def test_every_query_runs_on_postgresql_and_returns_rows(
    engine: Engine, where: str, sql: str, unit: str
) -> None:
    rows = query(engine, expand(sql, unit))
    assert rows, f"{where} returned nothing"
    assert all(value is not None for row in rows for value in row.values()), where


def test_values_a_bed_manager_reads(engine: Engine) -> None:
    panels = {p["title"]: {t["refId"]: t["rawSql"] for t in p["targets"]} for p in MODEL["panels"]}

    def run(title: str, ref: str = "A") -> list[Any]:
        return query(engine, expand(panels[title][ref]))

    history = run("ICU beds: occupancy and forecast")
    assert [r["in use"] for r in history] == [4, 5, 7]
    assert isinstance(history[0]["time"], datetime) and history[0]["time"].tzinfo is not None
    days = run("ICU beds: occupancy and forecast", "B")
    assert [r["time"] for r in days] == [date(2020, 11, 2) + timedelta(days=d) for d in range(1, 8)]
    for r in days:
        assert r["95% low"] <= r["80% low"] <= r["forecast median"] <= r["80% high"]
        assert r["80% high"] <= r["95% high"]
    capacity = run("Ventilators: in use and forecast", "C")
    assert len(capacity) == 3 + 7 and {r["capacity"] for r in capacity} == {4}
    assert run("Ventilators now") == [{"in use": 3, "capacity": 4}]
    (updated,) = run("Last forecast issued")
    assert updated["last forecast issued"] == NOW
    units = run("Units of $hospital: latest forecast")
    assert {(u["unit"], u["resource"]) for u in units} == {
        ("icu-a", "icu_beds"), ("icu-a", "ventilators"),
        (icu_forecast.HOSPITAL_ICU, "icu_beds"), (icu_forecast.HOSPITAL_ICU, "ventilators"),
    }  # fmt: skip
    assert [u["P(breach)"] for u in units] == sorted((u["P(breach)"] for u in units), reverse=True)
