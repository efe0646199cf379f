"""Quantile forecasts: windows, no look-ahead, no crossing, and the width bound (property test)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from triage.capacity import backtest as bt
from triage.capacity import conformal, wis
from triage.capacity.series import from_frame

pytestmark = pytest.mark.unit

LO95, HI95 = wis.interval_index(0.95)


def test_trailing_quantiles_see_only_the_window_before_the_lag() -> None:
    values = np.arange(10.0)
    out = conformal.trailing_quantiles(values, lag=2, window=3, min_count=3, levels=(0.0, 1.0))
    assert np.isnan(out[:4]).all()  # row 4 is the first with values 0..2 behind lag 2
    assert out[4] == pytest.approx([0.0, 2.0])
    assert out[9] == pytest.approx([5.0, 7.0])  # values 5, 6, 7


def test_scale_is_the_highest_recent_census_and_never_below_the_floor() -> None:
    census = np.array([0.0, 0.0, 2.0, 40.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0])
    scale = conformal.census_scale(census, 0, census.size)
    assert scale[:3] == pytest.approx([5.0, 5.0, 5.0])
    assert scale[3:10] == pytest.approx([40.0] * 7)  # 40 stays the recent peak for 7 days
    assert scale[10] == pytest.approx(10.0)


def test_quantiles_never_cross_and_the_long_window_remembers_a_wave() -> None:
    """SYNTHETIC: errors of +-30 % for 100 days, then +-2 %: the year's window keeps the wave."""
    rng = np.random.default_rng(5)
    days = 400
    y = np.full(days, 100.0)
    noise = np.where(np.arange(days) < 150, 0.3, 0.02) * rng.standard_normal(days)
    y = np.maximum(0.0, 100.0 * (1.0 + noise))
    points = np.full((days, 1), 100.0)
    q = conformal.quantile_bands(y, y, points, 0)
    ready = ~np.isnan(q[:, 0, 0])
    assert np.all(np.diff(q[ready, 0], axis=1) >= 0)
    width = q[:, 0, HI95] - q[:, 0, LO95]
    # 200 days after the wave the 180-day window has forgotten it, the 365-day one has not
    recent_only = conformal.trailing_quantiles(
        (y[1:] - 100.0) / 100.0, 1, conformal.WINDOW_DAYS, conformal.MIN_ERRORS, wis.LEVELS
    )
    assert width[360] > 3 * 100.0 * (recent_only[359, HI95] - recent_only[359, LO95])


def test_quantiles_use_no_outcome_after_their_origin() -> None:
    rng = np.random.default_rng(2)
    y = 50 + np.cumsum(rng.normal(0, 2, 300)).clip(-40)
    points = np.column_stack([y, y + 1.0])
    q = conformal.quantile_bands(y, y, points, 0)
    changed = y.copy()
    changed[201:] *= 3.0
    q_changed = conformal.quantile_bands(changed, changed, points, 0)
    assert q[:201] == pytest.approx(q_changed[:201], nan_ok=True)
    assert not np.allclose(q[230:], q_changed[230:])


def _bound(census: np.ndarray, origin: int) -> float:
    """The documented bound: 4 times the highest census of the last 7 days, at least 5 beds."""
    return 4.0 * max(5.0, float(np.max(census[max(0, origin - 6) : origin + 1])))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    y=st.lists(st.integers(0, 5000), min_size=40, max_size=160),
    scale_points=st.floats(0.0, 1e9),
)
def test_no_95_width_exceeds_the_bound_whatever_the_forecasts(
    y: list[int], scale_points: float
) -> None:
    """Any counts and any (absurd) point forecasts: every 95 % width stays under the bound."""
    series = np.asarray(y, dtype=float)
    rng = np.random.default_rng(len(y))
    points = rng.uniform(0, 1, size=(series.size, 14)) * scale_points
    q = conformal.quantile_bands(series, series, points, 0)
    width = q[:, :, HI95] - q[:, :, LO95]
    bound = np.array([_bound(series, t) for t in range(series.size)])
    ok = ~np.isnan(width)
    assert np.all(width[ok] <= np.broadcast_to(bound[:, None], width.shape)[ok] + 1e-9)
    assert np.all(q[~np.isnan(q)] >= 0.0)


@settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    level=st.integers(0, 3000),
    jumps=st.lists(st.tuples(st.integers(0, 199), st.integers(-3000, 30000)), max_size=6),
    zeros=st.integers(0, 60),
)
@example(level=0, jumps=[(100, 20000), (108, -20000)], zeros=0)  # a spike from 0 and back
@example(level=5, jumps=[(60, 3000), (140, -2990)], zeros=30)  # a wave ending in a quiet month
def test_the_backtest_never_reports_a_95_width_over_the_bound(
    level: int, jumps: list[tuple[int, int]], zeros: int
) -> None:
    """Series the backtest accepts (quiet weeks at 0, jumps, a trend): ratio to the bound <= 1."""
    occupancy = np.full(200, float(level))
    occupancy[:zeros] = 0.0
    for day, size in jumps:
        occupancy[day:] = np.maximum(0.0, occupancy[day:] + size)
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2021-01-01", periods=200).strftime("%Y-%m-%d"),
            "icu_occupancy": occupancy,
        }
    )
    series = from_frame(frame, "property")
    census = series.model_occupancy
    origins = range(bt.WARMUP_DAYS, series.dates.size - 1)
    for model in (bt.persistence, bt.linear_trend):
        q = bt.quantile_forecasts(
            series, bt.every_forecast(series, model, origins, 14), origins.start
        )
        width = q[:, :, HI95] - q[:, :, LO95]
        bound = np.array([_bound(census, t) for t in origins])[:, None]
        assert not np.isnan(width[-1]).any()
        assert np.all(np.isnan(width) | (width <= bound + 1e-9))
    rows = bt.run_backtest(series, {"persistence": bt.persistence}, horizon=14, step_days=3)
    assert all(r["max_width95_over_bound"] <= 1.0 + 1e-9 for r in rows)  # type: ignore[operator]
