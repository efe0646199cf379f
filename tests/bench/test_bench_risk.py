"""Risk models: single-patient scoring latency, batch CSV throughput, training time, the
held-out metrics of every outcome next to its baselines (REAL clinical / SEMI-SYNTHETIC fused),
and the external validation on every REAL cohort with the Dutch split-half recalibration.

    CTRIAGE_TEST_PORT_OFFSET=100 .venv/bin/pytest -m bench -s tests/bench/test_bench_risk.py
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from paths import RISK_MODELS

from triage.fhir.features import FEATURES
from triage.risk.age_direction import icu_age_conflict
from triage.risk.cohorts import load_external
from triage.risk.count_transport import dutch_death_gap, mexico_death_by_count
from triage.risk.external import (
    card_table,
    split_half_recalibration,
    split_half_spread,
    validate_cohorts,
)
from triage.risk.mexico import load_cohort
from triage.risk.model import RiskModel
from triage.risk.scoring import RiskPanel, score_csv
from triage.risk.training import make_splits, train_mexico

pytestmark = pytest.mark.bench

MODELS = RISK_MODELS
FLAG_NAMES = ("diabetes", "hypertension", "cardiovascular", "copd", "asthma", "ckd", "obesity",
              "immunosuppression", "smoking", "pneumonia")  # fmt: skip


@pytest.fixture(scope="module")
def mexico(shared_data: Path) -> Path:
    return shared_data / "clinical" / "mexico-ssa-2020-05-27"


def patients(mexico: Path, n: int, seed: int) -> list[dict[str, str]]:
    """n REAL Mexico patients as CSV rows, with plausible imaging biomarkers on half of them."""
    cohort = load_cohort(mexico)
    rng = np.random.default_rng(seed)
    rows = []
    for i in rng.choice(len(cohort), n, replace=False):
        f = cohort.features.iloc[int(i)]
        row = {"age": f"{f['age_years']:g}", "sex": "M" if f["sex_male"] == 1 else "F"}
        for flag in FLAG_NAMES:
            value = f[f"has_{flag}"]
            row[flag] = "" if np.isnan(value) else str(int(value))
        if rng.random() < 0.5:
            lesion = float(rng.uniform(0, 50))
            lung = float(rng.normal(4200, 600))
            row |= {
                "lung_volume_ml": f"{lung:.0f}",
                "lesion_volume_ml": f"{lung * lesion / 100:.0f}",
                "lesion_percent": f"{lesion:.1f}",
                "ggo_percent": f"{lesion * 0.7:.1f}",
                "consolidation_percent": f"{lesion * 0.3:.1f}",
                "well_aerated_percent": f"{(100 - lesion) * 0.93:.1f}",
            }
        rows.append(row)
    return rows


def test_bench_scoring_latency_and_throughput(mexico: Path, tmp_path: Path, record_result) -> None:
    model = RiskModel.load(MODELS / "ventilation.ubj")
    rows = patients(mexico, 20_000, seed=1)
    vectors = []
    for row in rows[:2000]:
        vector = dict.fromkeys(FEATURES)
        vector["age_years"] = float(row["age"])
        vector["lesion_percent"] = float(row["lesion_percent"]) if "lesion_percent" in row else None
        vectors.append(vector)
    for vector in vectors[:50]:
        model.score(vector)  # warm-up
    latencies = []
    for vector in vectors:
        started = time.perf_counter()
        model.score(vector)
        latencies.append(time.perf_counter() - started)
    ms = np.array(latencies) * 1000
    columns = sorted({c for row in rows for c in row})
    source = tmp_path / "patients.csv"
    with source.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    panel = RiskPanel.load(MODELS)
    started = time.perf_counter()
    report = score_csv(source, tmp_path / "scored.csv", panel)
    batch_s = time.perf_counter() - started
    assert report.scored == len(rows)
    record_result(
        "risk_scoring",
        {
            "single_row_score_ms": {
                "model": "ventilation (fused) RiskModel.score, SHAP top-5 included",
                "n": len(ms),
                "p50": round(float(np.percentile(ms, 50)), 3),
                "p95": round(float(np.percentile(ms, 95)), 3),
                "mean": round(float(ms.mean()), 3),
            },
            "batch_csv": {
                "what": "score_csv: parse + 3 outcomes x calibrated probability + top-5 SHAP "
                "of the primary model + write, 20,000 REAL Mexico patients (half with imaging)",
                "rows": len(rows),
                "seconds": round(batch_s, 2),
                "records_per_s": round(len(rows) / batch_s, 1),
            },
        },
    )


def test_bench_training_and_metrics(mexico: Path, tmp_path: Path, record_result) -> None:
    started = time.perf_counter()
    summary = train_mexico(mexico, tmp_path / "models", seed=2020, n_boot=1000)
    elapsed = time.perf_counter() - started
    table: dict[str, Any] = {}
    for name, per_split in summary["outcomes"].items():
        for split, result in per_split.items():
            entry = {
                "xgboost_fused (SEMI-SYNTHETIC)": _short(result["fused"]),
                "xgboost_clinical (REAL)": _short(result["clinical"]),
                **{
                    f"{k} ({'SEMI-SYNTHETIC' if 'fused' in k else 'REAL'})": _short(v)
                    for k, v in result["baselines"].items()
                },
            }
            table[f"{name}/{split}"] = entry
    record_result(
        "risk_training_mexico",
        {
            "training_time_s": round(elapsed, 1),
            "what": "6 XGBoost models (3 outcomes x fused/clinical) on the random split plus the "
            "same on the temporal split, isotonic calibration, 4 baselines each, 1000 bootstrap "
            "replicates per AUC; full cohort, no subsampling",
            "cohort": summary["training_data"]["counts"],
            "splits": summary["splits"],
            "semi_synthetic_odds_ratios": summary["semi_synthetic_odds_ratios"],
            "metrics": table,
        },
    )


def test_bench_external_validation(shared_data: Path, record_result) -> None:
    panel = RiskPanel.load(MODELS)
    started = time.perf_counter()
    cohorts = load_external(shared_data / "clinical")
    results = validate_cohorts(cohorts, panel, n_boot=1000, seed=2020)
    elapsed = time.perf_counter() - started
    dutch = cohorts["netherlands-hosp"]
    record_result(
        "risk_external_validation",
        {
            "what": "shipped models on every REAL external cohort (same rows: model, age alone, "
            "comorbidity count, the cohort's own 5-fold CV logistic ceiling; 1000 bootstrap "
            "replicates), then a site layer fitted on one random half of the Dutch cohort and "
            "validated on the other",
            "models": {n: m.version for n, m in panel.fused.items()},
            "seconds": round(elapsed, 1),
            "table": card_table(results),
            "dutch_split_half_recalibration": [
                split_half_recalibration(dutch, panel, outcome, seed=2020)
                for outcome in dutch.outcomes
            ],
            "dutch_split_half_spread": [
                split_half_spread(dutch, panel, outcome, range(2020, 2040))
                for outcome in dutch.outcomes
            ],
            "net_benefit": {
                f"{name}/{outcome}": entry["net_benefit"]
                for name, result in results.items()
                for outcome, entry in result["report"]["outcomes"].items()
            },
        },
    )


def test_bench_icu_age_direction(shared_data: Path, record_result) -> None:
    cohorts = load_external(shared_data / "clinical")
    started = time.perf_counter()
    result = icu_age_conflict(cohorts["netherlands-hosp"], cohorts["sirio-libanes-icu"])
    record_result(
        "risk_icu_age_direction",
        {
            "what": "in-sample oracles on the two REAL ICU cohorts: a log-odds per age band + "
            "the cohort's fields, free or with the other cohort's direction of ICU risk after "
            "65 (triage.risk.age_direction); targets by the validation's code on the same rows",
            "seconds": round(time.perf_counter() - started, 1),
            **result,
        },
    )


def test_bench_dutch_death_count(shared_data: Path, mexico: Path, record_result) -> None:
    started = time.perf_counter()
    gap = dutch_death_gap(load_external(shared_data / "clinical")["netherlands-hosp"],
                          RiskPanel.load(MODELS))  # fmt: skip
    cohort = load_cohort(mexico)
    fit_rows = make_splits(cohort, 2020)["random"].fit
    record_result(
        "risk_dutch_death_count",
        {
            "what": "the REAL Dutch death gap to its ceiling by comorbidity count, against what "
            "a count means among hospitalised Mexico fitting rows (triage.risk.count_transport); "
            "reads external outcomes, chooses nothing",
            "seconds": round(time.perf_counter() - started, 1),
            "netherlands_death": gap,
            "mexico_hospitalised_fit_rows_death": mexico_death_by_count(cohort, fit_rows),
        },
    )


def _short(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "n_positive", "auc", "auc_ci95", "brier", "ece")
    out = {k: metrics[k] for k in keys}
    if "without_pneumonia_flag" in metrics:
        out["auc_without_pneumonia_flag"] = metrics["without_pneumonia_flag"]["auc"]
        out["ece_uncalibrated"] = metrics["ece_uncalibrated"]
    out["at_sensitivity_80"] = {
        k: metrics["at_sensitivity_80"][k]
        for k in ("threshold", "sensitivity", "specificity", "ppv")
    }
    return out
