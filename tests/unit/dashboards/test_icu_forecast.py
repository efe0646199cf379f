"""The ICU forecast dashboard: what a bed manager needs is there, and its SQL answers right.

(The generic checks, JSON round trip through the SDK, datasources, layout, SQL on the store
schema, run for every dashboard in ``test_dashboards_build.py``; the same SQL on a real
PostgreSQL is ``tests/integration/test_dashboards_postgres.py``.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from dashboards import icu_forecast, store
from dashboards.catalog import DASHBOARDS
from streams.agents.sinks import write_forecast
from streams.mapping import forecast_record
from streams.records import UnitForecastRecord
from triage.capacity.unit_forecast import forecast_from_census

pytestmark = pytest.mark.unit

NOW = datetime(2020, 11, 2, 8, tzinfo=UTC)
MODEL = DASHBOARDS["icu-forecast"]()


def forecast_of(*args: Any, **kwargs: Any) -> UnitForecastRecord:
    """The capacity agent's record of a unit forecast (:func:`forecast_from_census`)."""
    return forecast_record(forecast_from_census(*args, **kwargs), issued_at=NOW.timestamp())


def _census(clock: datetime, occupants: int, ventilated: int) -> dict[str, Any]:
    return {
        "occupants": {f"p{i}": (clock - timedelta(days=i)).isoformat() for i in range(occupants)},
        "pipeline": {"q": [0.7, clock.isoformat()]},
        "ventilated": {f"p{i}": (clock - timedelta(days=i)).isoformat() for i in range(ventilated)},
        "at_risk": {"q": [0.7, clock.isoformat()]},
        "clock": clock.isoformat(),
    }


def fill(engine: Engine) -> None:
    """Two issues for unit icu-a of h1, one for the hospital-level ICU of h1 (unit NULL)."""
    store.create_schema(engine)
    for clock, occupants in ((NOW - timedelta(days=1), 3), (NOW, 5)):
        write_forecast(
            engine, forecast_of("h1", _census(clock, occupants, 2), 6, unit="icu-a", ventilators=3)
        )
    write_forecast(engine, forecast_of("h1", _census(NOW, 1, 0), 4, ventilators=2))


def expand(sql: str, hospital: str = "h1", unit: str = "icu-a") -> str:
    """Grafana's substitutions for SQLite: the whole time range, the chosen variables."""
    sql = sql.replace("$__timeFilter(issued_at)", "(issued_at IS NOT NULL)")
    sql = sql.replace("$hospital", hospital).replace("$unit", unit)
    assert "$" not in sql
    return sql


@pytest.fixture(scope="module")
def engine() -> Engine:
    engine = store.make_engine("sqlite://")
    fill(engine)
    return engine


def _panel(title: str) -> dict[str, Any]:
    (panel,) = [p for p in MODEL["panels"] if p["title"] == title]
    return panel


def test_registered_with_hospital_and_unit_variables() -> None:
    assert MODEL["uid"] == "ctriage-icu-forecast" and MODEL["title"] == "ctriage — ICU forecast"
    queries = {v["name"]: v for v in MODEL["templating"]["list"] if v["type"] == "query"}
    assert set(queries) == {"hospital", "unit"}
    assert all(v["datasource"]["uid"] == "${store}" for v in queries.values())
    titles = {p["title"] for p in MODEL["panels"]}
    assert {
        "ICU beds now",
        "Ventilators now",
        "P(over capacity within the horizon)",
        "Last forecast issued",
        "ICU beds: occupancy and forecast",
        "Ventilators: in use and forecast",
    } <= titles


def test_variables_list_hospitals_and_units(engine: Engine) -> None:
    queries = {v["name"]: v["query"] for v in MODEL["templating"]["list"] if v["type"] == "query"}
    with engine.connect() as conn:
        hospitals = [r[0] for r in conn.exec_driver_sql(expand(queries["hospital"]))]
        units = [r[0] for r in conn.exec_driver_sql(expand(queries["unit"]))]
    assert hospitals == ["h1"]
    assert units == [icu_forecast.HOSPITAL_ICU, "icu-a"]


@pytest.mark.parametrize(
    ("title", "capacity", "in_use"),
    [
        ("ICU beds: occupancy and forecast", 6, [3, 5]),
        ("Ventilators: in use and forecast", 3, [2, 2]),
    ],
)
def test_forecast_panels_show_history_bands_and_capacity(
    engine: Engine, title: str, capacity: int, in_use: list[int]
) -> None:
    panel = _panel(title)
    sql = {t["refId"]: expand(t["rawSql"]) for t in panel["targets"]}
    with engine.connect() as conn:
        history = conn.exec_driver_sql(sql["A"]).fetchall()
        days = conn.exec_driver_sql(sql["B"]).mappings().fetchall()
        capacities = conn.exec_driver_sql(sql["C"]).fetchall()
    assert [row[1] for row in history] == in_use  # the census at each issue, oldest first
    assert len(days) == 7  # the latest issue only
    for day in days:
        assert (
            day["95% low"] <= day["80% low"] <= day["forecast median"] <= day["80% high"]
            <= day["95% high"]
        )  # fmt: skip
    assert {row[1] for row in capacities} == {capacity} and len(capacities) == 2 + 7
    overrides = {
        o["matcher"]["options"]: o["properties"] for o in panel["fieldConfig"]["overrides"]
    }
    fill_to = {
        p["value"] for props in overrides.values() for p in props if p["id"] == "custom.fillBelowTo"
    }
    assert fill_to == {"80% low", "95% low"}


def test_stats_and_unit_table(engine: Engine) -> None:
    with engine.connect() as conn:

        def run(title: str, unit: str = "icu-a") -> list[Any]:
            return [
                conn.exec_driver_sql(expand(t["rawSql"], unit=unit)).mappings().fetchall()
                for t in _panel(title)["targets"]
            ]

        ((beds_now,),) = run("ICU beds now")
        assert (beds_now["occupied"], beds_now["capacity"]) == (5, 6)
        ((vent_now,),) = run("Ventilators now", unit=icu_forecast.HOSPITAL_ICU)
        assert (vent_now["in use"], vent_now["capacity"]) == (0, 2)
        (beds_breach,), (vent_breach,) = run("P(over capacity within the horizon)")
        assert 0.0 <= beds_breach["ICU beds"] <= 1.0 and 0.0 <= vent_breach["ventilators"] <= 1.0
        ((updated,),) = run("Last forecast issued")
        assert str(updated["last forecast issued"]).startswith("2020-11-02 08:00")
        (units,) = run("Units of $hospital: latest forecast")
    assert sorted((u["unit"], u["resource"]) for u in units) == [
        (icu_forecast.HOSPITAL_ICU, "icu_beds"),
        (icu_forecast.HOSPITAL_ICU, "ventilators"),
        ("icu-a", "icu_beds"),
        ("icu-a", "ventilators"),
    ]
    assert units[0]["P(breach)"] >= units[-1]["P(breach)"]  # riskiest first
