"""The weighted interval score (WIS) of quantile forecasts, as the COVID-19 Forecast Hub uses it.

Bracher, Ray, Gneiting and Reich (2021, PLOS Comput Biol 17(2): e1008618): for a median ``m`` and
central ``(1 - alpha_k)`` intervals ``[l_k, u_k]``, ``k = 1..K``,

    WIS = (0.5 |y - m| + sum_k alpha_k / 2 * IS_k) / (K + 0.5)
    IS_k = (u_k - l_k) + 2 / alpha_k * (l_k - y)+ + 2 / alpha_k * (y - u_k)+

It is a proper score in the units of ``y`` (beds); lower is better; with the median alone it is
half the absolute error. It splits exactly into **dispersion** (the width terms), **overprediction**
(``y`` below the median or a lower bound) and **underprediction** (``y`` above). Relative WIS is a
model's mean WIS over the mean WIS of a baseline on the same forecasts (the Hub's baseline is
persistence, as ours).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Central intervals scored (50, 80, 95 %) and their quantile levels, lower ascending then upper.
INTERVALS = (0.5, 0.8, 0.95)
ALPHAS = tuple(round(1.0 - c, 10) for c in INTERVALS)
LOWER_LEVELS = tuple(round(a / 2.0, 10) for a in reversed(ALPHAS))  # 0.025, 0.1, 0.25
UPPER_LEVELS = tuple(round(1.0 - a / 2.0, 10) for a in ALPHAS)  # 0.75, 0.9, 0.975
#: Every quantile level of a forecast, ascending: the median sits at index ``MEDIAN``.
LEVELS = (*LOWER_LEVELS, 0.5, *UPPER_LEVELS)
MEDIAN = len(LOWER_LEVELS)


@dataclass(frozen=True)
class IntervalScore:
    """WIS and its three parts, each an array shaped like the outcomes (NaN where unknown)."""

    wis: np.ndarray
    dispersion: np.ndarray
    underprediction: np.ndarray
    overprediction: np.ndarray


def interval_index(coverage: float, levels: tuple[float, ...] = LEVELS) -> tuple[int, int]:
    """Column indices ``(lower, upper)`` in ``levels`` of the central ``coverage`` interval."""
    alpha = round(1.0 - coverage, 10)
    return levels.index(round(alpha / 2.0, 10)), levels.index(round(1.0 - alpha / 2.0, 10))


def intervals_of(levels: tuple[float, ...]) -> tuple[float, ...]:
    """The central intervals (coverages) that the quantile ``levels`` hold, narrowest first."""
    return tuple(sorted(round(1.0 - 2.0 * q, 10) for q in levels if q < 0.5))


def weighted_interval_score(
    y: np.ndarray, quantiles: np.ndarray, levels: tuple[float, ...] = LEVELS
) -> IntervalScore:
    """Score outcomes ``y[...]`` against ``quantiles[..., len(levels)]``.

    ``levels``: ascending, symmetric around a median 0.5 (``LEVELS``: 50/80/95 % intervals).
    """
    y = np.asarray(y, dtype=float)
    q = np.asarray(quantiles, dtype=float)
    median = q[..., levels.index(0.5)]
    dispersion = np.zeros_like(y)
    over = 0.5 * np.maximum(0.0, median - y)
    under = 0.5 * np.maximum(0.0, y - median)
    covered = intervals_of(levels)
    for coverage in covered:
        alpha = 1.0 - coverage
        lo, hi = interval_index(coverage, levels)
        lower, upper = q[..., lo], q[..., hi]
        dispersion = dispersion + alpha / 2.0 * (upper - lower)
        over = over + np.maximum(0.0, lower - y)
        under = under + np.maximum(0.0, y - upper)
    norm = len(covered) + 0.5
    return IntervalScore(
        wis=(dispersion + over + under) / norm,
        dispersion=dispersion / norm,
        underprediction=under / norm,
        overprediction=over / norm,
    )
