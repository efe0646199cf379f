"""External validation: bad rows reported, metrics on the same rows, refusals, plots (REAL data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from triage.exceptions import ValidationReason, ValidationRefused
from triage.fhir.features import FEATURES
from triage.risk.cohorts import ExternalCohort
from triage.risk.evaluation import roc_auc
from triage.risk.external import DEFAULT_THRESHOLDS, card_table, validate_cohorts
from triage.risk.scoring import RiskPanel
from triage.risk.validation import net_benefit, parse_table, read_table, validate

pytestmark = pytest.mark.unit


def test_bad_rows_are_reported_with_row_number_field_and_reason() -> None:
    rows = [
        {"age": "70", "sex": "M", "death": "1"},
        {"age": "abc", "sex": "M", "death": "0"},
        {"age": "60", "sex": "X", "death": "2"},
        {"age": "50", "sex": "F", "death": ""},
    ]
    table = parse_table(rows)
    assert table.rows == 4 and table.rejected == 2 and len(table.matrix) == 2
    assert table.errors[0].startswith("row 3: age='abc': not_a_number")
    assert "row 4:" in table.errors[1] and "invalid_sex" in table.errors[1]
    assert "death='2': invalid_outcome" in table.errors[1]
    assert table.rejections == {"not_a_number": 1, "invalid_sex": 1, "invalid_outcome": 1}
    assert np.isnan(table.outcomes["death"][1])  # empty outcome: unknown, row kept


def test_a_table_without_outcomes_or_without_good_rows_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationRefused) as caught:
        parse_table([{"age": "70", "sex": "M"}])
    assert caught.value.reason is ValidationReason.NO_OUTCOME_COLUMN
    with pytest.raises(ValidationRefused) as caught:
        parse_table([{"age": "-4", "icu": "1"}])
    assert caught.value.reason is ValidationReason.NO_SCORED_ROWS
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="no header"):
        read_table(empty)


def test_tongji_report_compares_model_age_and_ceiling_on_the_same_rows(
    tongji: ExternalCohort, shipped_panel: RiskPanel, tmp_path: Path
) -> None:
    table = parse_table(tongji.rows())
    report = validate(
        table, shipped_panel, thresholds=DEFAULT_THRESHOLDS, n_boot=200, seed=1, plot_dir=tmp_path
    )
    death = report["outcomes"]["death"]
    labels = table.outcomes["death"]
    assert death["n"] == len(labels) and death["events"] == int(labels.sum())
    age = table.matrix[:, FEATURES.index("age_years")]
    assert death["age_alone"]["auc"] == pytest.approx(roc_auc(labels, age), abs=1e-4)
    low, high = death["model"]["auc_ci95"]
    assert low < death["model"]["auc"] < high
    assert death["comorbidity_count"] is None  # the cohort records no comorbidity
    assert "ldh_u_per_l" in report["fields_recorded"] and "sex_male" in report["fields_recorded"]
    assert death["ceiling_logistic_cv"]["auc"] > death["age_alone"]["auc"]  # labs carry signal
    assert [p["threshold"] for p in death["net_benefit"]] == list(DEFAULT_THRESHOLDS)
    png = Path(death["reliability_png"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(report)  # JSON-safe


def test_net_benefit_follows_the_decision_curve_formula() -> None:
    labels = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 1], dtype=float)
    probs = np.array([0.9, 0.3, 0.4, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05])
    point = net_benefit(labels, probs, 0.25)
    # 2 true, 1 false positive of 10 at odds 1/3
    assert point["model"] == pytest.approx(0.2 - 0.1 / 3, abs=1e-4)
    assert point["treat_all"] == pytest.approx(0.3 - 0.7 / 3, abs=1e-4)
    assert point["alerts_per_100"] == 30.0


def test_card_table_puts_model_age_count_and_ceiling_side_by_side(
    sirio: ExternalCohort, shipped_panel: RiskPanel
) -> None:
    results = validate_cohorts({"sirio": sirio}, shipped_panel, n_boot=0, seed=2)
    (row,) = card_table(results)
    assert row["outcome"] == "icu" and row["n"] == len(sirio.table)
    assert row["model_minus_age"] == pytest.approx(
        row["model"]["auc"] - row["age_alone"]["auc"], abs=1e-4
    )
    assert row["comorbidity_count"]["auc"] is not None  # hypertension + immunosuppression


def test_shipped_cards_carry_the_external_table(shipped_panel: RiskPanel) -> None:
    for name, model in shipped_panel.fused.items():
        block = model.card["external_validation"]
        assert block["label"].startswith("REAL DATA")
        outcomes = {row["outcome"] for row in block["rows"]}
        assert outcomes <= {name}
        if name in ("icu", "death"):
            assert {row["cohort"] for row in block["rows"]} >= {"netherlands-hosp"}
