"""Rolling-origin backtest of ICU occupancy forecasts against baselines, on daily series.

At every origin ``T`` each model sees only days ``<= T`` and forecasts days ``T+1..T+H``. Scored
origins are every ``step_days`` after a warm-up; every model is scored on the same (origin,
horizon) pairs, those whose observed occupancy is known (gaps are never scored). MAPE skips
observed zeros. Rows also carry ``width80``/``width95``, the mean width of the bands in beds
(coverage alone would reward wide bands).

``ctriage`` is the stock-flow model (``ctriage_flow``, also scored alone) blended with persistence
per horizon (:class:`AdaptiveBlend`): at each origin the weight of the flow model is the one of
0, 0.1, ..., 1 with the lowest MAE over the last ``BLEND_WINDOW_DAYS`` origins whose outcomes are
known at that origin. Window, grid and minimum were fixed before the first run, not tuned on the
scored origins; like the intervals, the weights use nothing after ``T``.

Prediction intervals (every model but CHIME, which has none): rolling split-conformal on the
log scale (``triage.capacity.conformal``): a local interval from the quantiles of the model's
log errors over the last 90 origins, rescaled by the conformal quantile of past errors normalised
by their own local interval over the last 365 origins. Only forecasts whose outcomes are known at
``T`` are used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from triage.capacity import conformal
from triage.capacity.chime import chime_forecast
from triage.capacity.series import DailySeries, flow_forecast

logger = logging.getLogger(__name__)

Forecaster = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
LEVELS = conformal.LEVELS
WARMUP_DAYS = 28
CALIBRATION_DAYS = conformal.CALIBRATION_DAYS
#: Origins before ``T`` whose forecasts the intervals at ``T`` learn from (both stages).
INTERVAL_HISTORY_DAYS = conformal.CALIBRATION_DAYS + conformal.RECALIBRATION_DAYS
BLEND_WINDOW_DAYS = 56
BLEND_MIN_ERRORS = 14
BLEND_WEIGHTS = np.linspace(0.0, 1.0, 11)


def persistence(occupancy: np.ndarray, _admissions: np.ndarray, horizon: int) -> np.ndarray:
    """Tomorrow and every later day as today."""
    return np.full(horizon, float(occupancy[-1]))


def seasonal_naive(occupancy: np.ndarray, _admissions: np.ndarray, horizon: int) -> np.ndarray:
    """Day ``T+h`` as the same weekday of the last observed week."""
    week = occupancy[-7:]
    return np.array([float(week[(h - 1) % 7]) for h in range(1, horizon + 1)])


def linear_trend(occupancy: np.ndarray, _admissions: np.ndarray, horizon: int) -> np.ndarray:
    """Least-squares line through the last 14 days, extended (floored at 0)."""
    recent = occupancy[-14:]
    t = np.arange(recent.size, dtype=float)
    slope, intercept = np.polyfit(t, recent, 1)
    future = t[-1] + np.arange(1, horizon + 1)
    return np.asarray(np.maximum(0.0, intercept + slope * future))


def ctriage_flow(occupancy: np.ndarray, admissions: np.ndarray, horizon: int) -> np.ndarray:
    """Ours: survivors of today's census plus forecast admissions (``flow_forecast``)."""
    return flow_forecast(occupancy, admissions, horizon)


@dataclass(frozen=True)
class AdaptiveBlend:
    """``w * first + (1 - w) * second``, ``w`` per origin and horizon from past errors only."""

    first: Forecaster
    second: Forecaster

    def __call__(self, occupancy: np.ndarray, admissions: np.ndarray, horizon: int) -> np.ndarray:
        """Without a history of scored forecasts the weight is 1: the first model alone."""
        return self.first(occupancy, admissions, horizon)


def blend_forecasts(
    y: np.ndarray, first: np.ndarray, second: np.ndarray, first_origin: int
) -> np.ndarray:
    """Blend two [origins, horizon] forecast arrays made at every origin from ``first_origin``."""
    rows, horizon = first.shape
    out = first.copy()
    t = np.arange(first_origin, first_origin + rows)
    for h in range(1, horizon + 1):
        target = t + h
        actual = np.full(rows, np.nan)
        ok = target < y.size
        actual[ok] = y[target[ok]]
        # candidates[w, row]: the blend of each weight, and its absolute error where known
        candidates = (
            BLEND_WEIGHTS[:, None] * first[:, h - 1]
            + (1.0 - BLEND_WEIGHTS[:, None]) * second[:, h - 1]
        )
        errors = np.abs(candidates - actual[None, :])
        for row in range(rows):
            hi = row - h + 1  # forecasts made at t with t + h <= origin have known outcomes
            window = errors[:, max(0, hi - BLEND_WINDOW_DAYS) : max(0, hi)]
            known = ~np.isnan(window[0])
            if known.sum() < BLEND_MIN_ERRORS:
                continue
            mae = window[:, known].mean(axis=1)
            best = int(np.flatnonzero(mae <= mae.min() + 1e-12)[-1])  # ties: more model
            out[row, h - 1] = candidates[best, row]
    return out


def every_forecast(
    series: DailySeries, model: Forecaster, origins: range, horizon: int
) -> np.ndarray:
    """Point forecasts at every origin of ``origins``; a blend learns from earlier ones too."""
    if not isinstance(model, AdaptiveBlend):
        return point_forecasts(series, model, origins, horizon)
    since = max(WARMUP_DAYS, origins.start - BLEND_WINDOW_DAYS - horizon)
    wider = range(since, origins.stop)
    first = point_forecasts(series, model.first, wider, horizon)
    second = point_forecasts(series, model.second, wider, horizon)
    blended = blend_forecasts(series.occupancy, first, second, since)
    return blended[origins.start - since :]


def chime_for(population: float) -> Forecaster:
    """CHIME fitted before each origin, for a region of ``population`` people."""

    def forecast(occupancy: np.ndarray, admissions: np.ndarray, horizon: int) -> np.ndarray:
        return chime_forecast(occupancy, admissions, population, horizon)

    return forecast


def default_models(population: float | None) -> dict[str, Forecaster]:
    """Ours and the baselines; CHIME only where the population is known."""
    models: dict[str, Forecaster] = {
        "ctriage": AdaptiveBlend(ctriage_flow, persistence),
        "ctriage_flow": ctriage_flow,
        "persistence": persistence,
        "seasonal_naive": seasonal_naive,
        "linear_trend": linear_trend,
    }
    if population:
        models["chime"] = chime_for(population)
    return models


#: Models whose forecasts get no interval (CHIME publishes none).
NO_INTERVALS = frozenset({"chime"})


@dataclass(frozen=True)
class Scored:
    """Forecasts of one model at the scored origins: ``point`` and ``bands`` [origin, h, level]."""

    point: np.ndarray
    bands: np.ndarray | None


def point_forecasts(
    series: DailySeries, model: Forecaster, origins: Iterable[int], horizon: int
) -> np.ndarray:
    """Return [len(origins), horizon] point forecasts, each from the history up to its origin."""
    occ, adm = series.model_occupancy, series.admissions
    return np.array([model(occ[: t + 1], adm[: t + 1], horizon) for t in origins])


def conformal_bands(
    series: DailySeries,
    all_points: np.ndarray,
    first_origin: int,
    scored: np.ndarray,
    recalibrate: bool = True,
) -> np.ndarray:
    """Intervals at ``scored`` origins from ``all_points`` (forecasts at every origin)."""
    every = conformal.bands(series.occupancy, all_points, first_origin, recalibrate)
    return every[np.asarray(scored) - first_origin]


def run_backtest(
    series: DailySeries,
    models: dict[str, Forecaster],
    horizon: int = 14,
    step_days: int = 7,
    start: str | None = None,
    end: str | None = None,
    recalibrate: bool = True,
) -> list[dict[str, object]]:
    """Score every model at every horizon; one dict per model and horizon (see module doc).

    ``recalibrate=False`` scores the local conformal intervals alone (the intervals before
    recalibration, kept for comparison).
    """
    n = series.dates.size
    first = WARMUP_DAYS
    last = n - 2
    scored_from = first + CALIBRATION_DAYS + horizon
    if start:
        scored_from = max(scored_from, int(series.dates.searchsorted(np.datetime64(start))))
    if end:
        last = min(last, int(series.dates.searchsorted(np.datetime64(end), side="right")) - 1)
    scored = np.arange(scored_from, last + 1, step_days)
    y = series.occupancy
    results: list[dict[str, object]] = []
    for name, model in models.items():
        if name in NO_INTERVALS:
            points = point_forecasts(series, model, scored, horizon)
            bands = None
        else:
            calib_from = max(first, scored_from - INTERVAL_HISTORY_DAYS - 2 * horizon)
            every = every_forecast(series, model, range(calib_from, last + 1), horizon)
            points = every[scored - calib_from]
            bands = conformal_bands(series, every, calib_from, scored, recalibrate)
        results.extend(_score(name, y, scored, points, bands))
        logger.info("backtest %s: %s scored at %d origins", series.name, name, scored.size)
    return results


def _score(
    name: str, y: np.ndarray, scored: np.ndarray, points: np.ndarray, bands: np.ndarray | None
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for h in range(1, points.shape[1] + 1):
        target = scored + h
        ok = target < y.size
        actual = np.full(scored.size, np.nan)
        actual[ok] = y[target[ok]]
        known = ~np.isnan(actual)
        err = np.abs(points[known, h - 1] - actual[known])
        nonzero = actual[known] > 0
        row: dict[str, object] = {
            "model": name,
            "horizon_days": h,
            "n": int(known.sum()),
            "mae": float(err.mean()) if err.size else None,
            "mape": float((err[nonzero] / actual[known][nonzero]).mean() * 100.0)
            if nonzero.any()
            else None,
            "coverage80": None,
            "coverage95": None,
            "width80": None,
            "width95": None,
        }
        if bands is not None:
            b = bands[known, h - 1]
            a = actual[known]
            has = ~np.isnan(b[:, 0])
            if has.any():
                row["coverage80"] = float(((a[has] >= b[has, 1]) & (a[has] <= b[has, 2])).mean())
                row["coverage95"] = float(((a[has] >= b[has, 0]) & (a[has] <= b[has, 3])).mean())
                row["width80"] = float((b[has, 2] - b[has, 1]).mean())
                row["width95"] = float((b[has, 3] - b[has, 0]).mean())
        rows.append(row)
    return rows


@dataclass(frozen=True)
class SeriesForecast:
    """Our forecast from one origin: dates, expected and the 95/80/80/95% bounds per day."""

    origin: np.datetime64
    dates: list[np.datetime64]
    expected: np.ndarray
    bands: np.ndarray


def forecast_at(series: DailySeries, origin: int, horizon: int = 14) -> SeriesForecast:
    """Our forecast from ``origin`` (an index of the series) with conformal intervals."""
    calib_from = max(WARMUP_DAYS, origin - INTERVAL_HISTORY_DAYS - 2 * horizon)
    ours = AdaptiveBlend(ctriage_flow, persistence)
    every = every_forecast(series, ours, range(calib_from, origin + 1), horizon)
    bands = conformal_bands(series, every, calib_from, np.array([origin]))[0]
    start = series.dates[origin]
    return SeriesForecast(
        origin=np.datetime64(start.date()),
        dates=[
            np.datetime64((start + np.timedelta64(h, "D")).date()) for h in range(1, horizon + 1)
        ],
        expected=every[-1],
        bands=bands,
    )
