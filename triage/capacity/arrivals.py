"""Daily admissions forecast: a damped exponential-growth trend fitted to recent admissions.

Fit: weighted least squares of ``log(admissions + 1)`` on time over the last ``window_days``
(newer days weigh more), giving today's level and a daily growth rate. The growth is damped
(``damping`` per day, as in damped-trend exponential smoothing) so that a wave's growth is not
extrapolated for two weeks. The residual scatter of the fit, grown with the horizon, gives the
log-scale uncertainty of the level used by the interval arithmetic of the census model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from triage.capacity.exceptions import CapacityDataReason, CapacityDataRejected


@dataclass(frozen=True)
class ArrivalForecast:
    """Expected admissions on days 1..n after the origin, and the log-sd of their level."""

    expected: list[float]
    growth_per_day: float
    log_sd: float


def fit_arrivals(
    daily: Sequence[float],
    horizon_days: int = 14,
    window_days: int = 14,
    damping: float = 0.85,
    max_growth_per_day: float = 0.25,
) -> ArrivalForecast:
    """Forecast admissions for the next ``horizon_days`` from a daily history (oldest first).

    Missing days (NaN) are ignored; fewer than 3 known days give a flat forecast at their mean.
    """
    history = np.asarray(daily, dtype=float)[-window_days:]
    if history.size and np.nanmin(history, initial=0.0) < 0:
        raise CapacityDataRejected(CapacityDataReason.NEGATIVE_COUNT, "negative admissions")
    t = np.arange(-history.size + 1, 1, dtype=float)
    known = ~np.isnan(history)
    if known.sum() < 3:
        level = float(np.nanmean(history)) if known.any() else 0.0
        return ArrivalForecast([level] * horizon_days, 0.0, 0.5)
    x, y = t[known], np.log1p(history[known])
    w = np.exp(x / window_days)  # the last day weighs e times the first
    design = np.column_stack([np.ones_like(x), x]) * np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(design, y * np.sqrt(w), rcond=None)
    intercept, slope = (
        float(coef[0]),
        float(np.clip(coef[1], -max_growth_per_day, max_growth_per_day)),
    )
    residual_sd = float(np.sqrt(np.average((y - intercept - slope * x) ** 2, weights=w)))
    expected = []
    cumulative = 0.0
    for h in range(1, horizon_days + 1):
        cumulative += damping**h
        expected.append(max(0.0, math.expm1(intercept + slope * cumulative)))
    # The level's uncertainty: scatter of a daily count around the trend, averaged over a week.
    log_sd = float(min(1.0, residual_sd / math.sqrt(7.0) + 0.05))
    return ArrivalForecast(expected, slope, log_sd)
