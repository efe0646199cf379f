"""The treatment-response export: store rows -> one row per study -> Parquet / CSV for pandas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dashboards import store
from triage.export import EXPORT_COLUMNS, NOT_CAUSAL, export_rows, write_export

pytestmark = pytest.mark.unit

T0 = datetime(2020, 11, 2, 8, tzinfo=UTC)


def _risk(uid: str, pseudonym: str, at: datetime, lesion: float, prior: str | None) -> dict:
    return {
        "risk_id": f"r-{uid}", "study_uid": uid, "patient_pseudonym": pseudonym,
        "probability": 0.3, "level": "high", "model_version": "m1", "threshold_version": "t1",
        "lesion_percent": lesion, "top_features": [], "completeness": "complete",
        "scored_at": at + timedelta(minutes=5), "latency_s": 1.0, "ct_time": at,
        "ggo_percent": lesion * 0.8, "consolidation_percent": lesion * 0.2,
        "rsna_category": "typical", "prior_study_uid": prior,
        "interval_prior_days": 3.0 if prior else None,
        "lesion_change_prior_points": 19.0 if prior else None,
        "lesion_change_prior_per_day": 19.0 / 3 if prior else None,
        "interval_first_days": 3.0 if prior else None,
        "lesion_change_first_points": 19.0 if prior else None,
    }  # fmt: skip


def _treatment(tid: str, pseudonym: str, klass: str, at: datetime, given: bool = True) -> dict:
    return {
        "treatment_id": tid, "patient_pseudonym": pseudonym, "drug": klass,
        "treatment_class": klass, "started_at": at, "status": "active" if given else "cancelled",
        "given": given, "source": "MedicationRequest",
    }  # fmt: skip


@pytest.fixture()
def stored(tmp_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    engine = store.make_engine(f"sqlite:///{tmp_path / 'store.sqlite'}")
    store.create_schema(engine)
    with engine.begin() as conn:
        store.upsert_risk(conn, _risk("1.1", "k1-a", T0, 12.0, None))
        store.upsert_risk(conn, _risk("1.2", "k1-a", T0 + timedelta(days=3), 31.0, "1.1"))
        store.upsert_risk(conn, _risk("2.1", "k1-b", T0, 8.0, None))
        store.upsert_treatment(
            conn, _treatment("t1", "k1-a", "corticosteroid", T0 + timedelta(hours=6))
        )
        store.upsert_treatment(
            conn, _treatment("t2", "k1-a", "corticosteroid", T0 + timedelta(days=1))
        )
        store.upsert_treatment(
            conn, _treatment("t3", "k1-a", "il6_inhibitor", T0 + timedelta(days=5))
        )
        store.upsert_treatment(conn, _treatment("t4", "k1-b", "remdesivir", T0, given=False))
        tables = store.export_tables(conn)
    engine.dispose()
    return tables


def test_rows_carry_change_and_the_treatments_before_each_study(stored) -> None:
    rows = export_rows(*stored)
    assert [(r["pseudonym"], r["study_number"]) for r in rows] == [
        ("k1-a", 1), ("k1-a", 2), ("k1-b", 1),
    ]  # fmt: skip
    first, follow, other = rows
    assert first["treatments_before"] == "" and first["prior_study_number"] is None
    assert follow["prior_study_number"] == 1 and follow["lesion_change_prior_points"] == 19.0
    assert follow["treated_corticosteroid"] and not follow["treated_il6_inhibitor"]  # after it
    assert follow["days_since_corticosteroid"] == pytest.approx(3.0 - 0.25)  # first dose
    assert not other["treated_remdesivir"]  # cancelled: never given
    assert all("study_uid" not in r for r in rows)  # no DICOM identifiers
    assert "not treatment effects" in NOT_CAUSAL


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_loads_in_pandas_with_the_documented_columns(stored, tmp_path, suffix) -> None:
    out = write_export(export_rows(*stored), tmp_path / f"export{suffix}")
    frame = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert list(frame.columns) == list(EXPORT_COLUMNS)
    assert len(frame) == 3
    assert frame["treated_corticosteroid"].tolist() == [False, True, False]


def test_other_suffixes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="parquet or .csv"):
        write_export([], tmp_path / "export.xlsx")


def test_every_column_is_documented() -> None:
    from paths import REPO_ROOT

    page = (REPO_ROOT / "docs" / "longitudinal.md").read_text()
    missing = [name for name in EXPORT_COLUMNS if f"`{name}`" not in page]
    assert not missing, f"document these export columns in docs/longitudinal.md: {missing}"
