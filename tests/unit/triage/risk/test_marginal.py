"""Averaging a model over fields a row does not record (:mod:`triage.risk.marginal`)."""

from __future__ import annotations

import numpy as np
import pytest

from triage.fhir.features import FEATURES
from triage.risk.marginal import COUNT_CAP, Background

pytestmark = pytest.mark.unit

FIELDS = ("age_years", "sex_male", "has_diabetes", "has_copd")
CONDITIONS = ("has_diabetes", "has_copd")
AGE, SEX, DIABETES, COPD = (FEATURES.index(f) for f in FIELDS)


def _background() -> Background:
    rng = np.random.default_rng(3)
    matrix = np.full((400, len(FEATURES)), np.nan, dtype=np.float32)
    matrix[:, AGE] = rng.integers(20, 90, 400)
    matrix[:, SEX] = rng.integers(0, 2, 400)
    matrix[:, DIABETES] = (rng.random(400) < matrix[:, AGE] / 120).astype(float)
    matrix[:, COPD] = (rng.random(400) < 0.1).astype(float)
    matrix[:10, COPD] = np.nan  # not recorded: never a reference patient
    return Background.draw(matrix, np.arange(400), FIELDS, CONDITIONS, rng, size=300)


def _diabetes_model(matrix: np.ndarray) -> np.ndarray:
    """A 'model' whose risk is 0.1 + 0.5 * diabetes (NaN: 0.9, the branch guess)."""
    return np.where(np.isnan(matrix[:, DIABETES]), 0.9, 0.1 + 0.5 * matrix[:, DIABETES])


def test_draw_keeps_complete_rows_and_round_trips() -> None:
    background = _background()
    assert background.weights.sum() == 300
    assert not np.isnan(background.rows).any()
    again = Background.from_dict(background.to_dict())
    assert again.fields == FIELDS and again.conditions == CONDITIONS
    np.testing.assert_array_equal(again.rows, background.rows)
    np.testing.assert_array_equal(again.weights, background.weights)


@pytest.mark.parametrize(
    "change",
    [
        {"fields": ["age_years", "not_a_feature"]},
        {"conditions": ["has_asthma"]},
        {"weights": [0]},
        {"rows": ["1"]},
        {"rows": ["60 1 x 0"]},
    ],
)
def test_malformed_block_is_refused(change: dict) -> None:
    data = {**_background().to_dict(), **change}
    with pytest.raises(ValueError):
        Background.from_dict(data)


def test_recorded_rows_are_scored_as_they_are() -> None:
    row = np.full((1, len(FEATURES)), np.nan, dtype=np.float32)
    row[0, [AGE, SEX, DIABETES, COPD]] = (50, 1, 1, 0)
    assert _background().predict(_diabetes_model, row)[0] == pytest.approx(0.6)


def test_an_unrecorded_field_is_averaged_not_guessed() -> None:
    background = _background()
    row = np.full((2, len(FEATURES)), np.nan, dtype=np.float32)
    row[:, AGE] = (25, 85)
    row[:, SEX] = 0
    probs = background.predict(_diabetes_model, row)
    share = background.rows[:, FIELDS.index("has_diabetes")] @ background.weights / 300
    # not the branch's 0.9; the old patient's average counts more diabetics (age kernel)
    assert 0.1 < probs[0] < probs[1] < 0.6
    assert probs[0] < 0.1 + 0.5 * share < probs[1]


def test_a_count_narrows_the_average_when_no_condition_is_named() -> None:
    background = _background()
    row = np.full((3, len(FEATURES)), np.nan, dtype=np.float32)
    row[:, AGE] = 60
    probs = background.predict(_diabetes_model, row, np.array([0.0, 2.0, np.nan]))
    assert probs[0] == pytest.approx(0.1)  # none of the conditions
    assert probs[1] == pytest.approx(0.6)  # both
    assert 0.1 < probs[2] < 0.6
    row[1, DIABETES] = 0  # a named condition: the count no longer applies
    again = background.predict(_diabetes_model, row[1:2], np.array([2.0]))
    assert again[0] == pytest.approx(0.1)
    # more conditions than any reference patient has (two named here): the count is ignored
    # rather than leaving nobody to average over
    unmatched = background.weights_for(row[0], float(COUNT_CAP + 4))
    np.testing.assert_allclose(unmatched, background.weights_for(row[0], np.nan))
