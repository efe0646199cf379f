"""Rows of a backtest: point errors, interval coverage and width, WIS, relative WIS.

One row per model and horizon, over the scored origins whose outcome is known (gaps are never
scored). ``mae``/``mape`` score the point forecast (MAPE skips observed zeros); ``wis`` and its
parts score the quantile forecast (median, 50/80/95 % intervals; ``triage.capacity.wis``);
``coverageXX``/``widthXX`` are the share of outcomes inside and the mean width (beds) of each
interval; ``max_width95`` is the widest 95 % interval and ``max_width95_over_bound`` its ratio to
the documented bound (``triage.capacity.conformal.width_bound``), never above 1;
``capped95_share`` how often the upper 95 % bound sits on that cap.
``other_model_share``: see :func:`score_rows`.
``relative_wis`` is the row's mean WIS over persistence's at the same horizon (the Forecast Hub's
relative WIS against its baseline, on identical origins).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from triage.capacity import wis

BASELINE = "persistence"


def outcomes(y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """``[origin, h - 1]`` observed values ``y[origin + h]`` (NaN: unknown or after the end)."""
    out = np.full((origins.size, horizon), np.nan)
    for h in range(1, horizon + 1):
        target = origins + h
        ok = target < y.size
        out[ok, h - 1] = y[target[ok]]
    return out


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def score_rows(
    name: str,
    actual: np.ndarray,
    points: np.ndarray,
    quantiles: np.ndarray,
    bound: np.ndarray,
    other: np.ndarray | None = None,
    levels: tuple[float, ...] = wis.LEVELS,
) -> list[dict[str, object]]:
    """One row per horizon for ``points`` and ``quantiles`` [origin, h - 1, level] vs ``actual``.

    ``bound`` is the width bound of each origin (beds); ``other[origin, h - 1]`` whether the
    forecast came from another model than the row's own (a blend or a selection), its share
    reported as ``other_model_share`` (None: not a blend or selection). ``levels``: those of
    the quantiles (default: median and 50/80/95 % intervals).
    """
    rows: list[dict[str, object]] = []
    for h in range(1, points.shape[1] + 1):
        a = actual[:, h - 1]
        known = ~np.isnan(a)
        err = np.abs(points[known, h - 1] - a[known])
        nonzero = a[known] > 0
        row: dict[str, object] = {
            "model": name,
            "horizon_days": h,
            "n": int(known.sum()),
            "mae": _mean(err),
            "mape": float((err[nonzero] / a[known][nonzero]).mean() * 100.0)
            if nonzero.any()
            else None,
        }
        q = quantiles[known, h - 1]
        has = ~np.isnan(q).any(axis=1)
        row.update(_interval_part(a[known][has], q[has], bound[known][has], levels))
        row["other_model_share"] = None if other is None else float(other[:, h - 1].mean())
        rows.append(row)
    return rows


def _interval_part(
    a: np.ndarray, q: np.ndarray, bound: np.ndarray, levels: tuple[float, ...]
) -> dict[str, object]:
    """WIS, coverage and widths of quantile forecasts ``q`` [n, level] of outcomes ``a``."""
    part: dict[str, object] = {"n_intervals": int(a.size)}
    score = wis.weighted_interval_score(a, q, levels)
    part["wis"] = _mean(score.wis)
    part["wis_dispersion"] = _mean(score.dispersion)
    part["wis_underprediction"] = _mean(score.underprediction)
    part["wis_overprediction"] = _mean(score.overprediction)
    part["relative_wis"] = None
    for coverage in wis.intervals_of(levels):
        lo, hi = wis.interval_index(coverage, levels)
        key = str(round(coverage * 100))
        inside = (a >= q[:, lo]) & (a <= q[:, hi])
        part[f"coverage{key}"] = _mean(inside)
        part[f"width{key}"] = _mean(q[:, hi] - q[:, lo])
    lo95, hi95 = wis.interval_index(0.95, levels)
    width95 = q[:, hi95] - q[:, lo95]
    part["max_width95"] = float(width95.max()) if width95.size else None
    part["max_width95_over_bound"] = float((width95 / bound).max()) if width95.size else None
    part["capped95_share"] = _mean(q[:, hi95] >= bound - 1e-9)
    return part


def add_relative_wis(rows: Iterable[dict[str, object]], baseline: str = BASELINE) -> None:
    """Set ``relative_wis`` of every row to its WIS over ``baseline``'s at the same horizon."""
    rows = list(rows)
    base = {r["horizon_days"]: r["wis"] for r in rows if r["model"] == baseline}
    for row in rows:
        reference = base.get(row["horizon_days"])
        if isinstance(reference, float) and reference > 0 and isinstance(row["wis"], float):
            row["relative_wis"] = row["wis"] / reference
