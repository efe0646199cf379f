"""The REAL external cohorts as validation tables (mapping decisions of triage.risk.cohorts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from triage.exceptions import TrainingDataError, TrainingDataReason
from triage.risk.cohorts import (
    MEDICAL_CONDITIONS,
    NETHERLANDS_AGE_YEARS,
    ExternalCohort,
    load_external,
)
from triage.risk.validation import parse_table

pytestmark = pytest.mark.unit


def test_dutch_cohort_keeps_every_row_and_reads_sex_1_as_male(
    dutch: ExternalCohort, clinical: Path
) -> None:
    raw = pd.read_csv(clinical / "netherlands-hosp" / "datahosp.csv.gz")
    table = dutch.table
    assert len(table) == len(raw) == 22_224  # COLUMNS.md: no deduplication
    assert (table["sex"] == "M").sum() == (raw["Sex_m"] == 1).sum()
    assert set(table["age"]) == set(NETHERLANDS_AGE_YEARS.values())
    assert table["death"].sum() == raw["Death"].sum() and table["icu"].sum() == raw["ICU"].sum()


def test_dutch_count_zero_means_recorded_no_and_a_positive_count_means_not_recorded(
    dutch: ExternalCohort,
) -> None:
    table = dutch.table
    none = table["comorbidity_count"] == 0
    for condition in MEDICAL_CONDITIONS:
        assert (table.loc[none, condition] == 0).all()
        assert table.loc[~none, condition].isna().all()
    assert "obesity" not in table and "smoking" not in table
    parsed = parse_table(dutch.rows()[:50])
    assert parsed.comorbidity_count is not None and parsed.rejected == 0


def test_sirio_uses_the_first_window_without_patients_already_in_icu(
    sirio: ExternalCohort,
) -> None:
    counts = sirio.counts
    assert len(sirio.table) == counts["patients"] - counts["in_icu_at_first_window"]
    assert set(sirio.table["icu"].unique()) <= {0.0, 1.0}
    assert "sex" not in sirio.table  # undocumented coding: not recorded
    assert sirio.table["age"].notna().all()
    assert not any(c.endswith("_mean") for c in sirio.table.columns)  # scaled vitals unmapped


def test_tongji_has_one_row_per_patient_with_labs_in_canonical_units(
    tongji: ExternalCohort,
) -> None:
    table = tongji.table
    assert len(table) == 375
    assert int(table["death"].sum()) == 174  # Yan et al. 2020: 174 deaths
    assert (table["sex"] == "M").sum() == 224
    dimer = table["d_dimer_ng_per_ml_feu"].dropna()
    assert dimer.median() > 100  # ug/mL x 1000: ng/mL FEU
    parsed = parse_table(tongji.rows())
    assert parsed.rows == 375
    assert parsed.rejected == len(parsed.errors)


def test_csv_round_trip_keeps_unrecorded_fields_empty(
    sirio: ExternalCohort, tmp_path: Path
) -> None:
    path = sirio.write_csv(tmp_path / "sirio.csv")
    back = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert len(back) == len(sirio.table)
    assert set(back.columns) == set(sirio.table.columns)
    assert back["hypertension"].isin(["0", "1", ""]).all()
    assert (back["hypertension"] == "").sum() == sirio.table["hypertension"].isna().sum()


def test_a_missing_cohort_file_is_a_typed_refusal(tmp_path: Path) -> None:
    (tmp_path / "netherlands-hosp").mkdir()
    with pytest.raises(TrainingDataError) as caught:
        load_external(tmp_path)
    assert caught.value.reason is TrainingDataReason.MISSING_FILE
    assert load_external(tmp_path / "nothing") == {}


def test_describe_names_the_source_and_its_hash(tongji: ExternalCohort) -> None:
    described = tongji.describe()
    assert described["cohort"] == "wuhan-tongji" and len(described["sha256"]) == 64
    assert described["outcomes"] == ["death"]
    assert np.isfinite(tongji.table["age"]).all()
