"""The Dutch death gap: a comorbidity count means more in the Dutch register than in Mexico's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from triage.risk.cohorts import ExternalCohort
from triage.risk.count_transport import dutch_death_gap, mexico_death_by_count, rates_by_count
from triage.risk.mexico import load_cohort
from triage.risk.scoring import RiskPanel
from triage.risk.training import make_splits

pytestmark = pytest.mark.unit


def test_rates_by_count_caps_the_count() -> None:
    count = np.array([0, 0, 1, 2, 3, 5, 7])
    labels = np.array([0, 1, 1, 0, 1, 1, 0], dtype=float)
    rates = rates_by_count(count, labels, risk=np.full(7, 0.5))
    assert [rates[k]["rows"] for k in "0123"] == [2, 1, 1, 3]
    assert rates["3"]["death_rate"] == pytest.approx(2 / 3, abs=1e-3)
    assert rates["0"]["mean_model_risk"] == 0.5


def test_the_dutch_gap_is_the_weight_of_the_count(
    dutch: ExternalCohort, shipped_panel: RiskPanel, shared_data: Path
) -> None:
    gap = dutch_death_gap(dutch, shipped_panel)
    cv = gap["cv_auc"]
    assert gap["model_auc"] < cv["age_bands_sex_count"] - 0.01  # the missed target
    assert cv["age_bands_count"] > cv["age_bands"] + 0.05  # the count carries the ceiling
    # re-weighting the count on the cohort recovers most of the gap
    recovered = cv["model_logit_count_reweighted"] - gap["model_auc"]
    assert recovered > 0.5 * (cv["age_bands_sex_count"] - gap["model_auc"])
    dutch_step = gap["by_count"]["1"]["death_rate"] / gap["by_count"]["0"]["death_rate"]
    cohort = load_cohort(shared_data / "clinical" / "mexico-ssa-2020-05-27")
    mexico = mexico_death_by_count(cohort, make_splits(cohort, 2020)["random"].fit)["by_count"]
    mexico_step = mexico["1"]["death_rate"] / mexico["0"]["death_rate"]
    assert dutch_step > 3.0 and mexico_step < 2.0  # what "one condition" means differs
