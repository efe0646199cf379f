"""The weighted interval score against hand-computed values and its known properties."""

from __future__ import annotations

import numpy as np
import pytest

from triage.capacity import wis

pytestmark = pytest.mark.unit


def test_levels_hold_the_median_and_the_50_80_95_intervals() -> None:
    assert wis.LEVELS == (0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975)
    assert wis.LEVELS[wis.MEDIAN] == 0.5
    assert wis.interval_index(0.8) == (1, 5)
    assert wis.intervals_of(wis.LEVELS) == (0.5, 0.8, 0.95)


def test_wis_by_hand() -> None:
    """Median 10, intervals [8, 12], [6, 14], [4, 16]; outcome 15 lies outside the 50 and 80 %."""
    q = np.array([4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0])
    score = wis.weighted_interval_score(np.array(15.0), q)
    # dispersion: 0.25*4 + 0.1*8 + 0.025*12 = 2.1; under: 0.5*5 + (15-12) + (15-14) = 6.5
    assert float(score.dispersion) == pytest.approx(2.1 / 3.5)
    assert float(score.underprediction) == pytest.approx(6.5 / 3.5)
    assert float(score.overprediction) == 0.0
    assert float(score.wis) == pytest.approx(8.6 / 3.5)


def test_parts_add_up_and_overprediction_when_below() -> None:
    rng = np.random.default_rng(0)
    q = np.sort(rng.normal(50, 10, size=(200, 7)), axis=1)
    y = rng.normal(50, 15, size=200)
    s = wis.weighted_interval_score(y, q)
    assert s.wis == pytest.approx(s.dispersion + s.underprediction + s.overprediction)
    below = y < q[:, 0]
    assert np.all(s.overprediction[below] > 0) and np.all(s.underprediction[below] == 0)


def test_a_point_mass_scores_half_the_absolute_error_for_the_median_alone() -> None:
    y = np.array([3.0, 7.0])
    point = np.array([[5.0, 5.0, 5.0]])  # levels 0.025, 0.5, 0.975 all at 5
    s = wis.weighted_interval_score(y, np.repeat(point, 2, axis=0), (0.025, 0.5, 0.975))
    # median part 0.5*2, interval part |y - 5| (both bounds at 5): (1 + 2) / 1.5 = 2 = |y - 5|
    assert s.wis == pytest.approx(np.abs(y - 5.0))


def test_the_true_quantiles_score_better_than_shifted_or_too_narrow_ones() -> None:
    """Proper score: on draws of N(100, 10), the true quantiles win on average."""
    rng = np.random.default_rng(1)
    y = rng.normal(100.0, 10.0, size=20_000)
    z = np.array([-1.959964, -1.281552, -0.674490, 0.0, 0.674490, 1.281552, 1.959964])
    true = wis.weighted_interval_score(y, np.broadcast_to(100 + 10 * z, (y.size, 7))).wis.mean()
    shifted = wis.weighted_interval_score(y, np.broadcast_to(105 + 10 * z, (y.size, 7))).wis.mean()
    narrow = wis.weighted_interval_score(y, np.broadcast_to(100 + 4 * z, (y.size, 7))).wis.mean()
    wide = wis.weighted_interval_score(y, np.broadcast_to(100 + 30 * z, (y.size, 7))).wis.mean()
    assert true < min(shifted, narrow, wide)
