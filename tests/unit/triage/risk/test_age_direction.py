"""The ICU age-direction oracle: constraints hold, and the two REAL ICU cohorts disagree."""

from __future__ import annotations

import numpy as np
import pytest

from triage.risk.age_direction import icu_age_conflict, monotone_age_fit
from triage.risk.cohorts import ExternalCohort

pytestmark = pytest.mark.unit


def _falling_after_65(n: int = 6000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    age = rng.choice([40.0, 55.0, 65.0, 75.0, 85.0], n)
    field = rng.integers(0, 2, n).astype(float)
    logit = np.select([age <= 65], [-2 + (age - 40) / 25], -1 - (age - 65) / 10) + 0.5 * field
    return age, field[:, None], (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)


def test_the_constraint_holds_and_costs_auc_where_the_data_go_the_other_way() -> None:
    age, fields, y = _falling_after_65()
    free = monotone_age_fit(age, fields, y, float("inf"), 1)
    never_falls = monotone_age_fit(age, fields, y, 65.0, 1)
    never_rises = monotone_age_fit(age, fields, y, 65.0, -1)
    tied = slice(free.bands.index(65.0), None)
    assert np.all(np.diff(never_falls.band_logit[tied]) >= -1e-6)
    assert np.all(np.diff(never_rises.band_logit[tied]) <= 1e-6)
    assert free.band_logit[-1] < free.band_logit[2] - 1.0  # the free fit finds the fall
    assert never_falls.auc < free.auc - 0.02
    assert never_rises.auc == pytest.approx(free.auc, abs=0.005)  # the data agree with it


def test_no_icu_model_with_one_age_direction_meets_both_real_cohorts(
    dutch: ExternalCohort, sirio: ExternalCohort
) -> None:
    result = icu_age_conflict(dutch, sirio)
    targets, oracles = result["targets"], result["oracles"]
    dutch_bar = targets["netherlands"]["ceiling_logistic_cv"] - 0.01
    sirio_bar = max(targets["sirio"]["age_alone"], targets["sirio"]["ceiling_logistic_cv"] - 0.01)
    # each cohort on its own can be met, in sample ...
    assert oracles["netherlands_free"]["auc"] >= dutch_bar
    assert oracles["sirio_free"]["auc"] >= sirio_bar
    # ... but not with the other cohort's direction of ICU risk over age after 65
    assert oracles["netherlands_risk_never_falls_from_65"]["auc"] < dutch_bar
    assert oracles["sirio_risk_never_rises_from_66"]["auc"] < sirio_bar
