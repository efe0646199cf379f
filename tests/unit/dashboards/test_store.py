"""The reporting store on SQLite: schema, idempotent upserts, append-only dead letters."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from dashboards import store

pytestmark = pytest.mark.unit

NOW = datetime(2020, 11, 2, 8, tzinfo=UTC)


def _risk(probability: float) -> dict:
    return {
        "risk_id": "r1",
        "study_uid": "1.2.3",
        "patient_pseudonym": "k1-abc",
        "probability": probability,
        "level": "high",
        "model_version": "m1",
        "threshold_version": "t1",
        "lesion_percent": 12.5,
        "top_features": [{"feature": "spo2_pct", "value": 88.0}],
        "completeness": "complete",
        "scored_at": NOW,
        "latency_s": 1.2,
    }


def test_upserts_are_idempotent(tmp_path: Path) -> None:
    engine = store.make_engine(f"sqlite:///{tmp_path / 'sub' / 'store.sqlite'}")
    store.create_schema(engine)
    store.create_schema(engine)  # twice is harmless
    with engine.begin() as conn:
        store.upsert_risk(conn, _risk(0.4))
        store.upsert_risk(conn, _risk(0.7))
        row = {
            "forecast_id": "f-1",
            "hospital": "h",
            "issued_at": NOW,
            "day": date(2020, 11, 3),
            "expected": 5.5,
            "lower80": 4,
            "upper80": 7,
            "capacity": 12,
            "p_exceed": 0.01,
        }
        store.upsert_forecast_rows(conn, [row, {**row, "expected": 6.0}])
        assert store.count_rows(conn, store.risks) == 1
        assert conn.execute(store.risks.select()).one().probability == 0.7
        assert conn.execute(store.forecasts.select()).one().expected == 6.0
        assert conn.execute(store.risks.select()).one().top_features[0]["feature"] == "spo2_pct"


def test_a_redelivered_older_revision_never_overwrites_a_newer_one(tmp_path: Path) -> None:
    engine = store.make_engine(f"sqlite:///{tmp_path / 'store.sqlite'}")
    store.create_schema(engine)
    with engine.begin() as conn:
        store.upsert_risk(conn, {**_risk(0.4), "revision": 0})
        store.upsert_risk(conn, {**_risk(0.7), "revision": 12})
        store.upsert_risk(conn, {**_risk(0.4), "revision": 0})  # redelivered after a crash
        row = conn.execute(store.risks.select()).one()
        assert (row.revision, row.probability) == (12, 0.7)
        store.upsert_risk(conn, {**_risk(0.6), "revision": 12})  # the same revision again
        assert conn.execute(store.risks.select()).one().probability == 0.6


def test_dead_letters_are_appended(tmp_path: Path) -> None:
    engine = store.make_engine(f"sqlite:///{tmp_path / 'store.sqlite'}")
    store.create_schema(engine)
    letter = {
        "topic": "ct.studies.dlq",
        "stage": "quantify",
        "reason_code": "not_dicom",
        "payload": "{}",
        "error": "x",
        "source_topic": "ct.studies",
        "source_partition": 0,
        "source_offset": 7,
        "at": NOW,
    }
    with engine.begin() as conn:
        store.insert_dead_letter(conn, letter)
        store.insert_dead_letter(conn, letter)
        assert store.count_rows(conn, store.dead_letters) == 2
