"""``ctriage risk validate`` and ``risk recalibrate`` on REAL cohort files, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli import app
from triage.risk.cohorts import netherlands, wuhan_tongji
from triage.risk.model import RiskModel

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tongji_csv(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cohort = wuhan_tongji(shared_data / "clinical" / "wuhan-tongji")
    return cohort.write_csv(tmp_path_factory.mktemp("tongji") / "tongji.csv")


def test_validate_prints_the_table_and_writes_json_and_plots(
    tongji_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report" / "tongji.json"
    args = ["risk", "validate", "--csv", str(tongji_csv), "--json", str(out), "--bootstrap", "50"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    death = report["outcomes"]["death"]
    assert f"{death['model']['auc']:.3f}" in result.output
    assert f"{death['age_alone']['auc']:.3f}" in result.output
    assert (out.parent / "reliability_death.png").is_file()
    assert report["rows"] == 375


def test_validate_reports_bad_rows_and_refuses_a_table_without_outcomes(tmp_path: Path) -> None:
    with_bad = tmp_path / "bad.csv"
    with_bad.write_text("age,sex,icu\n70,M,1\nold,F,0\n60,F,0\n")
    result = CliRunner().invoke(app, ["risk", "validate", "--csv", str(with_bad)])
    assert result.exit_code == 0, result.output
    assert "1 rejected" in result.output and "row 3: age='old': not_a_number" in result.output
    no_outcome = tmp_path / "none.csv"
    no_outcome.write_text("age,sex\n70,M\n")
    result = CliRunner().invoke(app, ["risk", "validate", "--csv", str(no_outcome)])
    assert result.exit_code == 2 and "no_outcome_column" in result.output


def test_recalibrate_writes_a_folder_that_risk_score_uses(
    shared_data: Path, tmp_path: Path
) -> None:
    cohort = netherlands(shared_data / "clinical" / "netherlands-hosp")
    local = tmp_path / "site-a.csv"
    cohort.write_csv(local)
    out = tmp_path / "site-models"
    result = CliRunner().invoke(
        app, ["risk", "recalibrate", "--csv", str(local), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    model = RiskModel.load(out / "death.ubj")
    assert "+site." in model.version and model.version in result.output
    assert model.card["site_calibration"]["site"] == "site-a"
    patients = tmp_path / "p.csv"
    patients.write_text("age,sex\n81,F\n")
    scored = tmp_path / "scored.csv"
    result = CliRunner().invoke(
        app, ["risk", "score", "--csv", str(patients), "--out", str(scored), "--models", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert model.version in result.output


def test_recalibrate_refuses_too_few_events(tmp_path: Path) -> None:
    local = tmp_path / "small.csv"
    local.write_text("age,sex,death\n" + "70,M,1\n" * 5 + "50,F,0\n" * 200)
    result = CliRunner().invoke(
        app, ["risk", "recalibrate", "--csv", str(local), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "too_few_events" in result.output
    assert not (tmp_path / "o").exists()
