"""The live per-unit model driven by a daily series: rebuilt census, forecasts, scored rows."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from triage.capacity import unit_backtest as ub
from triage.capacity.census import ICU_STAY, LengthOfStay
from triage.capacity.series import from_frame

pytestmark = pytest.mark.unit


def steady_unit(days: int = 260, admissions: float = 2.0, seed: int = 7) -> pd.DataFrame:
    """SYNTHETIC unit: Poisson admissions, lognormal stays (mean 10 d), census counted daily."""
    rng = np.random.default_rng(seed)
    stay = LengthOfStay(10.0, 0.6)
    admitted = rng.poisson(admissions, days)
    occupancy = np.zeros(days)
    for day, n in enumerate(admitted):
        lengths = np.exp(stay.mu + stay.sigma * rng.standard_normal(n))
        for length in lengths:
            occupancy[day : min(days, day + int(np.ceil(length)))] += 1
    return pd.DataFrame(
        {
            "date": pd.date_range("2021-01-01", periods=days).strftime("%Y-%m-%d"),
            "icu_occupancy": occupancy,
            "icu_admissions": admitted,
        }
    )


def test_spread_census_keeps_the_count_and_the_proportions() -> None:
    counts = ub.spread_census(10, np.array([3.0, 1.0, 0.0, 1.0]))
    assert counts.sum() == 10 and counts.tolist() == [6, 2, 0, 2]
    assert ub.spread_census(3, np.zeros(4)).sum() == 3  # no admissions known: spread evenly
    assert ub.spread_census(0, np.ones(4)).sum() == 0


def test_occupants_are_the_census_with_recent_admissions_more_likely() -> None:
    series = from_frame(steady_unit(), "unit")
    now = datetime(2021, 8, 1, 12, tzinfo=UTC)
    occupants = ub.occupants_at(series, 200, ICU_STAY, now)
    assert len(occupants) == int(series.occupancy[200])
    elapsed = [(now - o.admitted_at).total_seconds() / 86400 for o in occupants]
    assert min(elapsed) >= 0.5 and np.median(elapsed) < ICU_STAY.mean_days


def test_unit_forecast_of_a_steady_unit_stays_near_its_census() -> None:
    series = from_frame(steady_unit(), "unit")
    expected, q = ub.unit_quantiles(series, 200, LengthOfStay(10.0, 0.6), 7)
    assert expected.shape == (7,) and q.shape == (7, len(ub.UNIT_LEVELS))
    assert np.all(np.diff(q, axis=1) >= 0)
    assert abs(expected[-1] - series.occupancy[190:201].mean()) < 8.0


def test_unit_backtest_scores_the_three_models_on_the_same_origins() -> None:
    series = from_frame(steady_unit(days=300), "unit")
    rows = ub.run_unit_backtest(series, horizon=3, step_days=7)
    assert {r["model"] for r in rows} == {"ctriage_unit", "ctriage", "persistence"}
    assert len({r["n"] for r in rows if r["horizon_days"] == 1}) == 1
    assert all(r["wis"] is not None and r["relative_wis"] is not None for r in rows)
    assert "coverage50" not in rows[0]  # the live model reports 80 and 95 % intervals only
