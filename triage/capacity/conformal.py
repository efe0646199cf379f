"""Rolling split-conformal prediction intervals on the log scale, in two stages.

Inputs: a daily series ``y`` and point forecasts ``points[row, h - 1]`` made at every origin
``first_origin + row``. The log error of a forecast is ``log1p(y[t + h]) - log1p(forecast)``; at
origin ``T`` only forecasts with ``t + h <= T`` have a known error, so nothing after ``T`` is used.

1. **Local interval** (unchanged since the first backtest): the 2.5/10/90/97.5% quantiles of the
   last ``CALIBRATION_DAYS`` known log errors (at least ``MIN_CALIBRATION``), levels widened by
   the finite-sample factor ``(n + 1) / n``, give per level a log interval ``[lo, hi]``, centre
   ``m`` and half-width ``w``.
2. **Recalibration**: a quiet window understates the errors of the next wave, so each past
   forecast whose outcome is known at ``T`` gets the normalised score ``|e - m| / w`` against its
   own local interval (``w`` at least one bed); the conformal quantile ``k`` of the last
   ``RECALIBRATION_DAYS`` scores (at least ``MIN_RECALIBRATION``; else ``k = 1``) scales the
   interval: ``m +- k w``. ``k > 1`` widens it where outcomes used to fall outside, ``k < 1``
   shrinks it.

Window, minimum and levels were fixed before the method was first run on the real series, not
tuned on it. The one-bed floor on ``w`` came after that first run, which overflowed on regions
with weeks at 0 beds (zero-width local intervals); it was set from the integer counts, not from
coverage.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: Quantile levels of the bands: lower 95%, lower 80%, upper 80%, upper 95%.
LEVELS = (0.025, 0.1, 0.9, 0.975)
CALIBRATION_DAYS = 90
MIN_CALIBRATION = 30
RECALIBRATION_DAYS = 365
MIN_RECALIBRATION = 28
#: A band is never narrower than +-1 bed around the forecast (counts are integers; quiet
#: stretches at 0 beds would otherwise give zero widths and unbounded normalised scores).
MIN_HALF_WIDTH_BEDS = 1.0
#: Numerical guard on the log offsets (expm1 overflows past ~709).
MAX_LOG_OFFSET = 50.0


def log_errors(y: np.ndarray, points: np.ndarray, first_origin: int) -> np.ndarray:
    """``[row, h - 1]`` log errors of forecasts made at ``first_origin + row`` (NaN: unknown)."""
    rows, horizon = points.shape
    errors = np.full(points.shape, np.nan)
    t = np.arange(first_origin, first_origin + rows)
    for h in range(1, horizon + 1):
        ok = t + h < y.size
        errors[ok, h - 1] = np.log1p(y[t[ok] + h]) - np.log1p(points[ok, h - 1])
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
        level = np.minimum(1.0, q * grow) if q > 0.5 else np.maximum(0.0, 1.0 - (1.0 - q) * grow)
        position = level * (n_ok - 1)
        below = np.floor(position).astype(int)
        above = np.minimum(below + 1, n_ok - 1)
        frac = position - below
        pick = np.arange(samples.shape[0])
        low, high = samples[pick, below], samples[pick, above]
        out[enough, j] = low + frac * (high - low)
    return out


def log_bands(
    y: np.ndarray, points: np.ndarray, first_origin: int, recalibrate: bool = True
) -> np.ndarray:
    """``[row, h - 1, level]`` log-scale offsets of the bands from each forecast (NaN: none).

    ``recalibrate=False`` gives the local interval of stage 1 alone.
    """
    errors = log_errors(y, points, first_origin)
    rows, horizon = points.shape
    out = np.full((rows, horizon, len(LEVELS)), np.nan)
    for h in range(1, horizon + 1):
        e = errors[:, h - 1]
        forecast = np.maximum(0.0, points[:, h - 1])
        floor = np.log1p(forecast + MIN_HALF_WIDTH_BEDS) - np.log1p(forecast)
        local = trailing_quantiles(e, h, CALIBRATION_DAYS, MIN_CALIBRATION, LEVELS)
        if not recalibrate:
            out[:, h - 1] = local
            continue
        for lower, upper, coverage in ((0, 3, 0.95), (1, 2, 0.8)):
            centre = (local[:, lower] + local[:, upper]) / 2.0
            half = np.maximum(floor, (local[:, upper] - local[:, lower]) / 2.0)
            # A score is known at T when the outcome t + h <= T is: lag h, as for the errors.
            scores = np.abs(e - centre) / half
            k = trailing_quantiles(scores, h, RECALIBRATION_DAYS, MIN_RECALIBRATION, (coverage,))
            k = np.where(np.isnan(k[:, 0]), 1.0, k[:, 0])
            out[:, h - 1, lower] = centre - k * half
            out[:, h - 1, upper] = centre + k * half
        # Scaled apart, the 95% band must still hold the 80% one.
        out[:, h - 1, 0] = np.fmin(out[:, h - 1, 0], out[:, h - 1, 1])
        out[:, h - 1, 3] = np.fmax(out[:, h - 1, 3], out[:, h - 1, 2])
    return np.clip(out, -MAX_LOG_OFFSET, MAX_LOG_OFFSET)


def bands(
    y: np.ndarray, points: np.ndarray, first_origin: int, recalibrate: bool = True
) -> np.ndarray:
    """``[row, h - 1, level]`` occupancy bounds around ``points`` (see module doc)."""
    offsets = log_bands(y, points, first_origin, recalibrate)
    return np.maximum(0.0, np.expm1(np.log1p(points)[:, :, None] + offsets))
