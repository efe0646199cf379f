"""Arrivals and the arrival part of the patient-level ICU forecast, against hand computations."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from triage.capacity import (
    Occupant,
    PipelinePatient,
    forecast_icu,
    poisson_lognormal,
)
from triage.capacity.arrivals import fit_arrivals
from triage.capacity.census import ICU_STAY
from triage.capacity.exceptions import CapacityDataRejected
from triage.exceptions import ConfigRejected, ConfigRejectionReason

pytestmark = pytest.mark.unit

NOW = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def test_flat_admissions_forecast_flat() -> None:
    fc = fit_arrivals([4.0] * 14, horizon_days=7)
    assert fc.expected == pytest.approx([4.0] * 7)
    assert fc.growth_per_day == pytest.approx(0.0, abs=1e-12)


def test_growth_is_found_and_damped() -> None:
    history = [math.expm1(0.1 * t) + 10 for t in range(14)]
    fc = fit_arrivals(history, horizon_days=14, damping=0.85)
    assert 0.0 < fc.growth_per_day < 0.25
    steps = np.diff(np.log1p(fc.expected))
    assert np.all(steps > 0) and np.all(np.diff(steps) < 0)  # still growing, ever more slowly


def test_unknown_days_are_skipped_and_negatives_refused() -> None:
    assert fit_arrivals([np.nan] * 12 + [3.0, 3.0, 3.0], 3).expected == pytest.approx([3.0] * 3)
    assert fit_arrivals([np.nan, 2.0], 2).expected == [2.0, 2.0]
    with pytest.raises(CapacityDataRejected):
        fit_arrivals([1.0, -1.0, 2.0])


def test_poisson_lognormal_is_a_distribution_with_the_mean() -> None:
    for sd in (0.0, 0.3, 0.8):
        pmf = poisson_lognormal(6.0, sd)
        assert pmf.sum() == pytest.approx(1.0)
        assert float((np.arange(pmf.size) * pmf).sum()) == pytest.approx(6.0, rel=1e-3)
    assert poisson_lognormal(6.0, 0.8).var() != poisson_lognormal(6.0, 0.0).var()


def test_arrivals_add_their_survivors_by_hand() -> None:
    los = ICU_STAY  # forecast_icu's default
    fc = forecast_icu([], [], NOW, capacity_beds=10, days=3, arrivals=[2.0, 1.0, 0.5])
    for d in fc.days:
        by_hand = sum([2.0, 1.0, 0.5][j] * los.survival(d.day - j - 0.5) for j in range(d.day))
        assert d.expected == pytest.approx(by_hand)
        assert d.lower95 <= d.lower80 <= d.expected <= d.upper80 <= d.upper95


def test_no_arrivals_leaves_the_census_forecast_unchanged() -> None:
    occupants = [Occupant("a", NOW - timedelta(days=2)), Occupant("b", NOW)]
    pipeline = [PipelinePatient("c", 0.4, NOW)]
    a = forecast_icu(occupants, pipeline, NOW, 1)
    b = forecast_icu(occupants, pipeline, NOW, 1, arrivals=[0.0] * 7)
    assert [d.expected for d in a.days] == [d.expected for d in b.days]


def test_breach_probability_covers_every_day_and_is_deterministic() -> None:
    occupants = [Occupant(f"o{i}", NOW - timedelta(days=i % 5)) for i in range(9)]
    fc = forecast_icu(occupants, [], NOW, capacity_beds=10, days=7, arrivals=[1.5] * 7,
                      arrival_log_sd=0.3, hospital="h")  # fmt: skip
    again = forecast_icu(occupants, [], NOW, capacity_beds=10, days=7, arrivals=[1.5] * 7,
                         arrival_log_sd=0.3, hospital="h")  # fmt: skip
    assert fc.p_breach == again.p_breach
    assert fc.p_breach >= max(d.p_exceed for d in fc.days)
    assert 0.0 < fc.p_breach < 1.0
    roomy = forecast_icu(occupants, [], NOW, capacity_beds=40, days=7, arrivals=[1.5] * 7)
    assert roomy.p_breach < fc.p_breach


def test_simulated_daily_mean_agrees_with_the_exact_arithmetic() -> None:
    # The simulation behind p_breach and the exact marginals describe the same model: with
    # capacity at the median of the last day, both probabilities must be close.
    occupants = [Occupant(f"o{i}", NOW - timedelta(days=i)) for i in range(6)]
    fc = forecast_icu(occupants, [], NOW, capacity_beds=0, days=1, arrivals=[2.0],
                      simulations=20000)  # fmt: skip
    assert fc.p_breach == pytest.approx(fc.days[0].p_exceed, abs=0.01)


def test_bad_arrivals_refused() -> None:
    with pytest.raises(ConfigRejected) as info:
        forecast_icu([], [], NOW, 3, arrivals=[1.0, -2.0])
    assert info.value.reason is ConfigRejectionReason.INVALID_ARRIVALS
