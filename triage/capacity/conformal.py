"""Quantile forecasts around point forecasts: rolling split-conformal on the count scale, bounded.

Inputs: a daily series ``y`` (NaN: unknown), the census the models saw (``census``, gaps filled)
and point forecasts ``points[row, h - 1]`` made at every origin ``first_origin + row``.

1. **Scale**: at origin ``t``, ``s_t = max(MIN_SCALE_BEDS, the highest census of the last
   SCALE_DAYS days)``, known at ``t``.
2. **Scaled errors**: ``z = (y[t + h] - forecast) / s_t``. At origin ``T`` only forecasts with
   ``t + h <= T`` have a known error, so nothing after ``T`` is used.
3. **Quantiles**: the empirical quantiles (levels ``LEVELS``, widened by ``(n + 1) / n``) of the
   last ``WINDOW_DAYS`` known errors, and of the last ``LONG_WINDOW_DAYS``; the lower levels take
   the lower of the two, the upper levels the higher, the median the recent window's (a quiet
   half-year understates the errors of the next wave; the year before remembers the last one).
   Each quantile is ``forecast + s_T * z_q``: quantiles of one sample cannot cross.
4. **Bound**: every quantile is clipped to ``[0, CAP_MULTIPLE * s_T]``. So no interval is ever
   wider than ``CAP_MULTIPLE`` times the recent census (at least ``MIN_SCALE_BEDS``): the 95 %
   width is at most ``4 * max(5 beds, highest census of the last 7 days)``.

Why not the log scale of the first version: an error ``log1p(y) - log1p(f)`` learnt on a forecast
near 0 (a floored trend, a quiet summer) multiplies any later forecast by ``e^error``, and the
rescaling of a second conformal stage had no cap: 95 % widths of 1e10 beds on other countries'
series. Errors scaled by the census known at the origin cannot blow up that way.

Settings (scale, windows, floor, cap) were chosen on the Italian series only (national and 21
regions, origins from 2020-07), before any other country was run; see docs/capacity-backtests.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from triage.capacity.wis import LEVELS, MEDIAN

WINDOW_DAYS = 180
LONG_WINDOW_DAYS = 365
MIN_ERRORS = 30
SCALE_DAYS = 7
#: The scale of a series near 0 beds (counts are integers; a quiet stretch at 0 beds would give
#: zero-width intervals).
MIN_SCALE_BEDS = 5.0
#: No quantile above this multiple of the scale. On Italy, 99.9 % of 14-day-ahead censuses were
#: below 4 times the scale at their origin (largest: 6.1).
CAP_MULTIPLE = 4.0


def census_scale(census: np.ndarray, first_origin: int, rows: int) -> np.ndarray:
    """``s_t`` for the origins ``first_origin .. first_origin + rows - 1`` (see module doc)."""
    recent = pd.Series(census).rolling(SCALE_DAYS, min_periods=1).max().to_numpy(dtype=float)
    return np.asarray(np.maximum(MIN_SCALE_BEDS, recent[first_origin : first_origin + rows]))


def width_bound(scale: np.ndarray) -> np.ndarray:
    """The widest any interval can be at origins of scale ``scale`` (beds)."""
    return np.asarray(CAP_MULTIPLE * np.asarray(scale, dtype=float))


def scaled_errors(
    y: np.ndarray, points: np.ndarray, first_origin: int, scale: np.ndarray
) -> np.ndarray:
    """``[row, h - 1]`` errors of forecasts made at ``first_origin + row``, over ``s_t``."""
    rows, horizon = points.shape
    errors = np.full(points.shape, np.nan)
    t = np.arange(first_origin, first_origin + rows)
    for h in range(1, horizon + 1):
        ok = t + h < y.size
        errors[ok, h - 1] = (y[t[ok] + h] - points[ok, h - 1]) / scale[ok]
    return errors


def trailing_quantiles(
    values: np.ndarray, lag: int, window: int, min_count: int, levels: tuple[float, ...]
) -> np.ndarray:
    """``[row, level]``: conformal quantiles of ``values[row - lag - window + 1 : row - lag + 1]``.

    NaNs are skipped; rows with fewer than ``min_count`` values get NaN. Levels are widened by
    ``(n + 1) / n`` for the ``n`` values of the row (capped at the sample's extremes).
    """
    rows = values.size
    padded = np.concatenate([np.full(window + lag, np.nan), values])
    samples = np.sort(sliding_window_view(padded, window)[1 : rows + 1], axis=1)  # NaN last
    n = np.count_nonzero(~np.isnan(samples), axis=1)
    out = np.full((rows, len(levels)), np.nan)
    enough = n >= min_count
    if not enough.any():
        return out
    samples, n_ok = samples[enough], n[enough]
    grow = (n_ok + 1) / n_ok
    for j, q in enumerate(levels):
        if q == 0.5:
            level = np.full(n_ok.shape, 0.5)
        elif q > 0.5:
            level = np.minimum(1.0, q * grow)
        else:
            level = np.maximum(0.0, 1.0 - (1.0 - q) * grow)
        position = level * (n_ok - 1)
        below = np.floor(position).astype(int)
        above = np.minimum(below + 1, n_ok - 1)
        frac = position - below
        pick = np.arange(samples.shape[0])
        low, high = samples[pick, below], samples[pick, above]
        out[enough, j] = low + frac * (high - low)
    return out


def error_quantiles(errors: np.ndarray, lag: int) -> np.ndarray:
    """``[row, level]`` quantiles of the scaled errors of one horizon (step 3 of the module doc)."""
    recent = trailing_quantiles(errors, lag, WINDOW_DAYS, MIN_ERRORS, LEVELS)
    year = trailing_quantiles(errors, lag, LONG_WINDOW_DAYS, MIN_ERRORS, LEVELS)
    out = recent.copy()
    out[:, :MEDIAN] = np.fmin(recent[:, :MEDIAN], year[:, :MEDIAN])
    out[:, MEDIAN + 1 :] = np.fmax(recent[:, MEDIAN + 1 :], year[:, MEDIAN + 1 :])
    return out


def quantile_bands(
    y: np.ndarray, census: np.ndarray, points: np.ndarray, first_origin: int
) -> np.ndarray:
    """``[row, h - 1, level]`` quantiles (levels ``LEVELS``) around ``points`` (NaN: too early)."""
    rows, horizon = points.shape
    scale = census_scale(census, first_origin, rows)
    forecast = np.maximum(0.0, points)
    errors = scaled_errors(y, forecast, first_origin, scale)
    out = np.full((rows, horizon, len(LEVELS)), np.nan)
    for h in range(1, horizon + 1):
        z = error_quantiles(errors[:, h - 1], h)
        out[:, h - 1] = forecast[:, h - 1, None] + scale[:, None] * z
    return np.clip(out, 0.0, width_bound(scale)[:, None, None])
