"""Every SQL query of the ICU forecast, administration and pipeline health dashboards runs on a
real PostgreSQL holding real rows.

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
from grafana_sql import grafana_expand, panel_sql, query
from sqlalchemy import Engine, select

from dashboards import admin, icu_forecast, pipeline_health, store
from streams.admin.policy_log import audit_record
from streams.agents.sinks import write_audit, write_dead_letter, write_forecast
from streams.dlq import build_dead_letter
from streams.mapping import forecast_record
from streams.records import ThresholdAudit, UnitForecastRecord
from triage.alerts.policy import AlertPolicy
from triage.alerts.thresholds import ThresholdChange, apply_change
from triage.capacity.unit_forecast import forecast_from_census

pytestmark = pytest.mark.integration

NOW = datetime(2020, 11, 2, 8, tzinfo=UTC)
RANGE = ("2020-10-03T08:00:00Z", "2020-11-16T08:00:00Z")  # now-30d .. now+14d
MODEL = icu_forecast.build_icu_forecast()


def forecast_of(*args: Any, **kwargs: Any) -> UnitForecastRecord:
    """The capacity agent's record of a unit forecast (:func:`forecast_from_census`)."""
    return forecast_record(forecast_from_census(*args, **kwargs), issued_at=NOW.timestamp())


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
        write_forecast(engine, forecast_of("h1", census, 8, unit="icu-a", ventilators=4))
        # a redelivered forecast is upserted, not duplicated
        write_forecast(engine, forecast_of("h1", census, 8, unit="icu-a", ventilators=4))
    write_forecast(engine, forecast_of("h1", _census(NOW, 2, 1), 5, ventilators=2))
    write_forecast(engine, forecast_of("h2", _census(NOW, 9, 6), 10, ventilators=6))
    yield engine
    engine.dispose()


def expand(sql: str, unit: str = "icu-a") -> str:
    """What Grafana's PostgreSQL datasource sends for this dashboard, time range and variables."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 BETWEEN '{RANGE[0]}' AND '{RANGE[1]}'", sql)
    sql = sql.replace("$hospital", "h1").replace("$unit", unit)
    assert "$" not in sql, sql
    return sql


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


# --- administration and pipeline health dashboards --------------------------------------------
# Rows written by the worker's own sinks (audit, dead letters) and the store's upserts (risks,
# alerts), then every query of both dashboards run as Grafana's PostgreSQL datasource sends it.

ADMIN_RANGE = (NOW - timedelta(days=7), NOW)
ADMIN_BOARDS = {
    "admin": admin.build_admin(),
    "pipeline-health": pipeline_health.build_pipeline_health(),
}


def admin_expand(sql: str, hospital: str = "h1") -> str:
    """Grafana's PostgreSQL macros for ``ADMIN_RANGE`` (as its datasource writes them)."""
    return grafana_expand(sql, *ADMIN_RANGE, hospital=hospital)


def _change(
    policy: AlertPolicy, hospital: str, high: float, at: datetime
) -> tuple[AlertPolicy, ThresholdAudit]:
    applied = apply_change(policy, ThresholdChange(hospital, {"high": high}, "review", "ana"))
    assert applied is not None
    return applied.new, audit_record(applied, "threshold-admin", "admin-api", at.timestamp())


@pytest.fixture(scope="module")
def admin_engine(postgres_server) -> Engine:  # type: ignore[no-untyped-def]
    engine = store.make_engine(postgres_server.create_database("admin_dashboard_it"))
    store.create_schema(engine)
    policy = AlertPolicy.single(0.2, "t1")
    # t1 -> t2 before the time range, t2 -> t3 inside it; h2 changes once
    for high, days_ago in ((0.3, 40), (0.4, 2)):
        policy, audit = _change(policy, "h1", high, NOW - timedelta(days=days_ago))
        write_audit(engine, audit)
        write_audit(engine, audit)  # a redelivered audit record is upserted
    write_audit(engine, _change(AlertPolicy.single(0.2, "t1"), "h2", 0.25, NOW)[1])
    levels = ("low", "low", "high", "critical")
    with engine.begin() as conn:
        for i, level in enumerate(levels):
            row = {
                "study_uid": f"1.2.{i}",
                "patient_pseudonym": f"k1-{i}",
                "probability": 0.1 + 0.2 * i,
                "level": level,
                "model_version": "m1",
                "threshold_version": "t3",
            }
            store.upsert_risk(
                conn, {**row, "risk_id": f"r{i}", "scored_at": NOW - timedelta(hours=4 - i)}
            )
            if level in ("high", "critical"):
                store.upsert_alert(
                    conn,
                    {
                        **row,
                        "alert_id": f"a{i}",
                        "hospital": "h1",
                        "raised_at": NOW - timedelta(hours=4 - i),
                    },
                )
    for reason, offset in (("invalid_volume", 1), ("invalid_volume", 2), ("unknown_patient", 3)):
        letter = build_dead_letter(
            stage="quantify",
            reason=reason,
            error="probe",
            source_topic="ct.studies",
            source_partition=0,
            source_offset=offset,
            key=None,
            payload=b"{}",
        )
        letter = letter.model_copy(update={"at": (NOW - timedelta(hours=offset)).timestamp()})
        write_dead_letter(engine, "ct.studies.dlq", letter)  # fmt: skip
    yield engine
    engine.dispose()


def _board_targets() -> list[tuple[str, str]]:
    queries = []
    for name, board in ADMIN_BOARDS.items():
        queries += [
            (f"{name} variable {v['name']}", v["query"])
            for v in board["templating"]["list"]
            if v["type"] == "query"
        ]
        queries += [
            (f"{name}/{p['title']}/{t['refId']}", t["rawSql"])
            for p in board["panels"]
            for t in p["targets"]
            if "rawSql" in t
        ]
    return queries  # fmt: skip


@pytest.mark.parametrize(("where", "sql"), _board_targets(), ids=lambda v: str(v)[:50])
def test_admin_and_health_queries_run_on_postgresql(
    admin_engine: Engine, where: str, sql: str
) -> None:
    rows = query(admin_engine, admin_expand(sql))
    assert rows, f"{where} returned nothing"


def _admin_panel(title: str, ref: str = "A") -> str:
    return admin_expand(panel_sql(ADMIN_BOARDS["admin"], title, ref))


def test_values_an_administrator_reads(admin_engine: Engine) -> None:
    steps = query(admin_engine, _admin_panel(
        "Alerts per hour by level vs the levels in force ($hospital)", "B"))  # fmt: skip
    # in force at the range's start (set 40 days ago), the change 2 days ago, held to the end
    assert [r["high from"] for r in steps] == [0.3, 0.4, 0.4]
    assert [r["time"] for r in steps] == [ADMIN_RANGE[0], NOW - timedelta(days=2), NOW]
    assert all(r["moderate from"] < r["high from"] < r["critical from"] for r in steps)
    policies = query(admin_engine, _admin_panel(
        "Policies in force (latest audited change per hospital)"))  # fmt: skip
    assert [(p["hospital"], p["threshold version"], p["high from"]) for p in policies] == [
        ("h1", "t3", 0.4), ("h2", "t2", 0.25)
    ]  # fmt: skip
    (point,) = query(admin_engine, _admin_panel(
        "Observed operating point by model and threshold version"))  # fmt: skip
    assert (point["studies scored"], point["low %"], point["alerts per 100 studies"]) == (4, 50, 50)
    history = query(admin_engine, _admin_panel("Threshold change history (audit trail)"))
    assert [(h["hospital"], h["new version"]) for h in history] == [("h2", "t2"), ("h1", "t3")]
    assert (history[1]["high from (old)"], history[1]["high from (new)"]) == (0.3, 0.4)
    now = query(admin_engine, _admin_panel("Model + calibration version (latest score)"))
    assert now == [{"model + calibration version": "m1"}]


def test_dead_letters_an_operator_reads(admin_engine: Engine) -> None:
    (sql,) = [t["rawSql"] for p in ADMIN_BOARDS["pipeline-health"]["panels"]
              for t in p["targets"] if "rawSql" in t]  # fmt: skip
    rows = query(admin_engine, admin_expand(sql))
    assert [(r["reason"], r["dead letters"]) for r in rows] == [
        ("invalid_volume", 2), ("unknown_patient", 1)
    ]  # fmt: skip
    assert all("payload" not in r and "error" not in r for r in rows)


def test_a_binary_dead_letter_is_stored_with_its_own_reason(postgres_server: Any) -> None:
    """PostgreSQL text holds no NUL: the chaos run's poison bytes were refused by the store."""
    engine = store.make_engine(postgres_server.create_database("binary_dead_letter_it"))
    store.create_schema(engine)
    letter = build_dead_letter(
        stage="risk", reason="malformed_record", error="not json", source_topic="ct.quantification",
        source_partition=0, source_offset=7, key=b"k\x00", payload=b"\x00\xffnot json at all",
    )  # fmt: skip
    write_dead_letter(engine, "ct.quantification.dlq", letter)
    with engine.connect() as conn:
        (row,) = conn.execute(select(store.dead_letters)).mappings().all()
    assert (row["reason_code"], row["source_offset"]) == ("malformed_record", 7)
    assert row["payload"] == "\\x00\ufffdnot json at all"
    engine.dispose()
