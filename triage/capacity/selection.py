"""Per-series model selection by past WIS, without look-ahead.

At origin ``T`` and horizon ``h``, each candidate's mean WIS over the last ``WINDOW_DAYS`` origins
whose outcome is known at ``T`` (``t + h <= T``) is compared with the default model's. The
selection takes the best candidate only when it has at least ``MIN_SCORED`` such scores and its
mean WIS is below ``MARGIN`` times the default's; otherwise the default. Rule, window, minimum and
margin were chosen on the Italian series only (docs/capacity-backtests.md): on them switching
more readily (no margin, 56 or 90 days) made the national 7-day relative WIS worse, not better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from triage.capacity import wis

WINDOW_DAYS = 180
MIN_SCORED = 90
MARGIN = 0.8


@dataclass(frozen=True)
class Selection:
    """Selected ``points`` [row, h - 1], ``quantiles`` [row, h - 1, level] and ``choice``.

    ``choice[row, h - 1]`` indexes the candidates (0: the default model).
    """

    points: np.ndarray
    quantiles: np.ndarray
    choice: np.ndarray


def trailing_mean(values: np.ndarray, lag: int, window: int, min_count: int) -> np.ndarray:
    """``[row]``: mean of ``values[row - lag - window + 1 : row - lag + 1]`` (NaN skipped).

    NaN where fewer than ``min_count`` values are known.
    """
    rows = values.size
    known = ~np.isnan(values)
    total = np.concatenate([[0.0], np.cumsum(np.where(known, values, 0.0))])
    count = np.concatenate([[0], np.cumsum(known)])
    hi = np.clip(np.arange(rows) - lag + 1, 0, rows)
    lo = np.clip(hi - window, 0, rows)
    n = count[hi] - count[lo]
    return np.where(n >= min_count, (total[hi] - total[lo]) / np.maximum(n, 1), np.nan)


def select_by_wis(
    actual: np.ndarray,
    points: list[np.ndarray],
    quantiles: list[np.ndarray],
) -> Selection:
    """Choose among candidates (index 0 the default) at every origin and horizon.

    ``actual[row, h - 1]``: the outcome of the forecast made at row ``row`` (NaN: unknown); the
    rows are consecutive daily origins, so an outcome at lag ``h`` is known ``h`` rows later.
    """
    rows, horizon = actual.shape
    out_points = points[0].copy()
    out_quantiles = quantiles[0].copy()
    choice = np.zeros((rows, horizon), dtype=int)
    for h in range(1, horizon + 1):
        past = np.array(
            [
                trailing_mean(
                    wis.weighted_interval_score(actual[:, h - 1], q[:, h - 1]).wis,
                    h,
                    WINDOW_DAYS,
                    MIN_SCORED,
                )
                for q in quantiles
            ]
        )
        ready = ~np.isnan(past).any(axis=0)
        best = np.argmin(np.where(np.isnan(past), np.inf, past), axis=0)
        better = ready & (past[best, np.arange(rows)] < MARGIN * past[0])
        chosen = np.where(better, best, 0)
        choice[:, h - 1] = chosen
        for i in range(1, len(points)):
            pick = chosen == i
            out_points[pick, h - 1] = points[i][pick, h - 1]
            out_quantiles[pick, h - 1] = quantiles[i][pick, h - 1]
    return Selection(out_points, out_quantiles, choice)
