"""Backtest of the live per-unit model (``census.forecast_icu``) driven by a real daily series.

The worker forecasts a unit from its occupants (each with an admission time), the pipeline of
scored patients and recent admissions. A public daily series has no patients, so at each origin
``T`` the census is rebuilt from it the way the worker would hold it:

- **occupants**: the ``y[T]`` patients in the census are spread over the admission days of the
  last ``MAX_LAG_DAYS`` in proportion to the patients of each day expected to be still there,
  ``a[T - j] * S(j + 0.5)`` (``S`` the stay's survival; largest remainders), each admitted at
  mid-day;
- **arrivals**: ``fit_arrivals`` on the admissions of the 14 days up to ``T``, as the worker does
  on its 14 full days of admissions (no pipeline: a series has no scored CTs);
- **stay**: fitted as today (``triage.capacity.stay``) on the 180 days before each quarter,
  refitted quarterly (the refit the capacity docs recommend), the shipped ``ICU_STAY`` where a
  fit is impossible.

Origins: those with ``MAX_LAG_DAYS`` of known admissions. The model's own quantiles (median,
80 % and 95 %) are scored; so WIS here uses those two intervals for every model compared.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from triage.capacity import backtest as bt
from triage.capacity import conformal, scoring, wis
from triage.capacity.arrivals import fit_arrivals
from triage.capacity.census import ICU_STAY, LengthOfStay, Occupant, forecast_icu
from triage.capacity.exceptions import CapacityDataRejected
from triage.capacity.series import DailySeries
from triage.capacity.stay import fit_length_of_stay

MAX_LAG_DAYS = 90
ARRIVAL_WINDOW_DAYS = 14
STAY_FIT_DAYS = 180
#: The quantile levels the live model reports (``DayForecast``): 2.5, 10, 50, 90, 97.5 %.
UNIT_LEVELS = (0.025, 0.1, 0.5, 0.9, 0.975)


def spread_census(census: int, weights: np.ndarray) -> np.ndarray:
    """Integer counts summing to ``census``, proportional to ``weights`` (largest remainders)."""
    if census <= 0:
        return np.zeros(weights.size, dtype=int)
    if weights.sum() <= 0:
        weights = np.ones(weights.size)
    exact = census * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    rest = census - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:rest]] += 1
    return counts


def occupants_at(
    series: DailySeries, origin: int, stay: LengthOfStay, now: datetime
) -> list[Occupant]:
    """The census of day ``origin`` as occupants with admission times (see module doc)."""
    lags = np.arange(MAX_LAG_DAYS)
    days = origin - lags
    admitted = np.where(days >= 0, series.admissions[np.maximum(days, 0)], 0.0)
    weights = np.nan_to_num(admitted) * stay.survival_curve(lags + 0.5)
    census = int(round(series.model_occupancy[origin]))
    counts = spread_census(census, weights)
    return [
        Occupant(patient=f"j{j}-{k}", admitted_at=now - timedelta(days=float(j) + 0.5))
        for j in np.flatnonzero(counts)
        for k in range(int(counts[j]))
    ]


def unit_quantiles(
    series: DailySeries, origin: int, stay: LengthOfStay, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """The live model's ``expected`` [h - 1] and quantiles [h - 1, level] (``UNIT_LEVELS``)."""
    day = series.dates[origin]
    now = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    recent = series.admissions[origin - ARRIVAL_WINDOW_DAYS + 1 : origin + 1]
    arrivals = fit_arrivals(list(recent), horizon_days=horizon)
    forecast = forecast_icu(
        occupants_at(series, origin, stay, now),
        [],
        now,
        capacity_beds=max(0, int(round(series.model_occupancy[origin]))),
        days=horizon,
        los_mean_days=stay.mean_days,
        los_sigma=stay.sigma,
        hospital=series.name,
        arrivals=arrivals.expected,
        arrival_log_sd=arrivals.log_sd,
        simulations=0,
    )
    expected = np.array([d.expected for d in forecast.days])
    quantiles = np.array(
        [[d.lower95, d.lower80, d.median, d.upper80, d.upper95] for d in forecast.days], dtype=float
    )
    return expected, quantiles


def stays_by_quarter(series: DailySeries, origins: np.ndarray) -> list[LengthOfStay]:
    """The stay at each origin: fitted on the 180 days before its quarter (no look-ahead)."""
    fitted: dict[pd.Timestamp, LengthOfStay] = {}
    out = []
    for origin in origins:
        quarter = series.dates[origin].to_period("Q").start_time
        if quarter not in fitted:
            try:
                fit = fit_length_of_stay(
                    series,
                    start=str((quarter - pd.Timedelta(days=STAY_FIT_DAYS)).date()),
                    end=str((quarter - pd.Timedelta(days=1)).date()),
                )
                fitted[quarter] = fit.stay
            except CapacityDataRejected:
                fitted[quarter] = ICU_STAY
        out.append(fitted[quarter])
    return out


def unit_origins(series: DailySeries, origins: np.ndarray) -> np.ndarray:
    """The ``origins`` with ``MAX_LAG_DAYS`` of known admissions up to them."""
    known = (~np.isnan(series.admissions)).astype(int)
    window = np.convolve(known, np.ones(MAX_LAG_DAYS, dtype=int))[: known.size]
    return origins[window[origins] == MAX_LAG_DAYS]


def unit_forecasts(
    series: DailySeries, origins: np.ndarray, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """``expected`` [origin, h - 1] and ``quantiles`` [origin, h - 1, level] at ``origins``."""
    stays = stays_by_quarter(series, origins)
    made = [unit_quantiles(series, int(t), s, horizon) for t, s in zip(origins, stays, strict=True)]
    expected = np.array([m[0] for m in made]).reshape(len(made), horizon)
    quantiles = np.array([m[1] for m in made]).reshape(len(made), horizon, len(UNIT_LEVELS))
    return expected, quantiles


def run_unit_backtest(
    series: DailySeries, horizon: int = 14, step_days: int = 7
) -> list[dict[str, object]]:
    """Rows (``triage.capacity.scoring``) of ``ctriage_unit``, ``ctriage`` and persistence.

    All three on the same origins (scored origins of the series backtest with ``MAX_LAG_DAYS``
    of known admissions), WIS on the median and 80/95 % intervals.
    """
    origins = unit_origins(series, bt.scored_origins(series, horizon, step_days, None, None))
    if origins.size == 0:
        return []
    actual = scoring.outcomes(series.occupancy, origins, horizon)
    bound = conformal.width_bound(
        conformal.census_scale(series.model_occupancy, 0, series.dates.size)
    )[origins]
    pick = [wis.LEVELS.index(q) for q in UNIT_LEVELS]
    expected, quantiles = unit_forecasts(series, origins, horizon)
    rows = scoring.score_rows("ctriage_unit", actual, expected, quantiles, bound, None, UNIT_LEVELS)
    since = max(bt.WARMUP_DAYS, int(origins[0]) - bt.INTERVAL_HISTORY_DAYS - 2 * horizon)
    every = range(since, int(origins[-1]) + 1)
    for name, model in (
        ("ctriage", bt.default_models(None)["ctriage"]),
        ("persistence", bt.persistence),
    ):
        points = bt.every_forecast(series, model, every, horizon)
        q = bt.quantile_forecasts(series, points, since)[origins - since][:, :, pick]
        rows += scoring.score_rows(
            name, actual, points[origins - since], q, bound, None, UNIT_LEVELS
        )
    scoring.add_relative_wis(rows)
    return rows
