"""``ctriage risk score`` end to end through the CLI, on the shipped models."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli.root import app as root
from triage.fhir.features import FEATURES
from triage.risk.scoring import FLAGS, RiskPanel, parse_row

pytestmark = pytest.mark.unit

IMAGING_SEVERE = {
    "lung_volume_ml": "3800",
    "lesion_volume_ml": "1700",
    "lesion_percent": "45",
    "ggo_percent": "30",
    "consolidation_percent": "15",
    "well_aerated_percent": "50",
}
IMAGING_MILD = {
    "lung_volume_ml": "4500",
    "lesion_volume_ml": "90",
    "lesion_percent": "2",
    "ggo_percent": "1.5",
    "consolidation_percent": "0.5",
    "well_aerated_percent": "93",
}
BASE = {"age": "72", "sex": "M", "diabetes": "1", "hypertension": "1", "pneumonia": "1"}


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def run(args: list[str]):
    return CliRunner().invoke(root, args)


def said(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def test_score_csv_end_to_end(tmp_path: Path) -> None:
    rows = [
        {"id": "severe", **BASE, **IMAGING_SEVERE, "spo2_percent": "88", "ward": "ED-2"},
        {"id": "mild", **BASE, **IMAGING_MILD},
        {"id": "clinical", **BASE},
        {"id": "empty"},
        {"id": "partial", **BASE, "lesion_percent": "40"},
        {"id": "bad-age", **BASE, "age": "abc"},
        {"id": "bad-sex", **BASE, "sex": "X"},
        {"id": "bad-flag", **BASE, "copd": "7"},
        {"id": "bad-spo2", **BASE, "spo2_percent": "140"},
        {"id": "two-bad", **BASE, "age": "-3", "smoking": "yes"},
    ]
    source = write_rows(tmp_path / "patients.csv", rows)
    out = tmp_path / "scored.csv"
    result = run(["risk", "score", "--csv", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "scored 5 of 10 rows, rejected 5" in said(result)
    with out.open(newline="") as handle:
        scored = {r["id"]: r for r in csv.DictReader(handle)}
    first = next(iter(scored.values()))
    assert list(first)[:2] == ["id", "age"] and "ward" in first  # input columns kept, in order
    for column in ("risk_ventilation", "risk_icu", "risk_death", "top_features", "error"):
        assert column in first
    ok = ["severe", "mild", "clinical", "empty", "partial"]
    for key in ok:
        row = scored[key]
        assert row["error"] == ""
        for column in ("risk_ventilation", "risk_icu", "risk_death"):
            assert 0.0 <= float(row[column]) <= 1.0
    assert (
        scored["severe"]["model_kind"] == "fused" and scored["clinical"]["model_kind"] == "clinical"
    )
    assert scored["partial"]["model_kind"] == "clinical (imaging incomplete)"
    assert float(scored["severe"]["risk_ventilation"]) > 2 * float(
        scored["mild"]["risk_ventilation"]
    )
    assert float(scored["severe"]["risk_death"]) > float(scored["mild"]["risk_death"])
    top = json.loads(scored["severe"]["top_features"])
    assert top and {t["feature"] for t in top} <= set(FEATURES)
    assert all(t["direction"] in {"raises", "lowers"} for t in top)
    assert scored["severe"]["ward"] == "ED-2"
    # rejected rows: a clear reason per field, no risk
    assert scored["bad-age"]["error"] == "age='abc': not_a_number"
    assert scored["bad-sex"]["error"] == "sex='X': invalid_sex"
    assert scored["bad-flag"]["error"] == "copd='7': invalid_flag"
    assert scored["bad-spo2"]["error"] == "spo2_percent='140': out_of_range"
    assert scored["two-bad"]["error"] == "smoking='yes': invalid_flag; age='-3': out_of_range"
    for key in ("bad-age", "bad-sex", "bad-flag", "bad-spo2", "two-bad"):
        assert scored[key]["risk_ventilation"] == "" and scored[key]["top_features"] == ""


def test_score_matches_the_single_row_model(tmp_path: Path) -> None:
    """Batch scoring gives the same probability as RiskModel.score for the same row."""
    source = write_rows(tmp_path / "one.csv", [{**BASE, **IMAGING_SEVERE}])
    out = tmp_path / "one-scored.csv"
    assert run(["risk", "score", "--csv", str(source), "--out", str(out)]).exit_code == 0
    with out.open(newline="") as handle:
        row = next(csv.DictReader(handle))
    features, errors = parse_row({**BASE, **IMAGING_SEVERE})
    assert errors == []
    panel = RiskPanel.load()
    expected = panel.fused["ventilation"].score(features).probability
    assert float(row["risk_ventilation"]) == pytest.approx(expected, abs=1e-4)


def test_parse_row_accepts_spellings_and_ignores_unknown() -> None:
    features, errors = parse_row(
        {
            " Age ": " 61 ",
            "SEX": "female",
            "Pneumonia": "1.0",
            "asthma": "0",
            "colour": "blue",
            None: "x",
        }
    )
    assert errors == []
    assert features["age_years"] == 61.0 and features["sex_male"] == 0.0
    assert features["has_pneumonia"] == 1.0 and features["has_asthma"] == 0.0
    assert features["has_diabetes"] is None  # empty or absent: missing, never imputed
    assert len(FLAGS) == 11


def test_bad_files_and_models_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    result = run(["risk", "score", "--csv", str(tmp_path / "absent.csv"), "--out", str(out)])
    assert result.exit_code == 2 and "cannot score" in said(result)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = run(["risk", "score", "--csv", str(empty), "--out", str(out)])
    assert result.exit_code == 2 and "no header row" in said(result)
    source = write_rows(tmp_path / "p.csv", [BASE])
    result = run(
        ["risk", "score", "--csv", str(source), "--out", str(out), "--models", str(tmp_path)]
    )
    assert result.exit_code == 2 and "missing_file" in said(result)


def test_train_needs_exactly_one_source(tmp_path: Path) -> None:
    result = run(["train", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "exactly one of --cohort and --mexico" in said(result)
    result = run(["train", "--out", str(tmp_path / "m"), "--cohort", "a", "--mexico", "b"])
    assert result.exit_code == 2


def test_a_comorbidity_count_is_read_and_a_bad_one_refused(tmp_path: Path) -> None:
    unnamed = {"age": "70", "sex": "F"}
    rows = [
        {"id": "none", **unnamed, "comorbidity_count": "0"},
        {"id": "three", **unnamed, "comorbidity_count": "3"},
        {"id": "unknown", **unnamed, "comorbidity_count": ""},
        {"id": "bad", **unnamed, "comorbidity_count": "1.5"},
    ]
    out = tmp_path / "counts-scored.csv"
    source = write_rows(tmp_path / "counts.csv", rows)
    assert run(["risk", "score", "--csv", str(source), "--out", str(out)]).exit_code == 0
    with out.open(newline="") as handle:
        scored = {row["id"]: row for row in csv.DictReader(handle)}
    assert scored["bad"]["error"] == "comorbidity_count='1.5': invalid_count"
    death = {k: float(scored[k]["risk_death"]) for k in ("none", "unknown", "three")}
    # unnamed conditions: more of them, higher risk; not knowing sits in between
    assert death["none"] < death["unknown"] < death["three"]
    features, errors = parse_row(rows[1])
    assert errors == [] and features["comorbidity_count"] == 3.0
    single = RiskPanel.load().clinical["death"].score(features).probability
    assert float(scored["three"]["risk_death"]) == pytest.approx(single, abs=1e-4)
