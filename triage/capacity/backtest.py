"""Rolling-origin backtest of ICU occupancy forecasts against baselines, on daily series.

At every origin ``T`` each model sees only days ``<= T`` and forecasts days ``T+1..T+H``. Scored
origins are every ``step_days`` from day ``WARMUP_DAYS + FIRST_SCORED_AFTER_DAYS + H``; every
model is scored on the same (origin, horizon) pairs, those whose observed occupancy is known
(gaps are never scored). The rows (``triage.capacity.scoring``) carry MAE and MAPE of the point
forecast, WIS (and its parts) and relative WIS against persistence of the quantile forecast, the
coverage and width of its 50/80/95 % intervals, and its widest 95 % interval against the bound.

``ctriage`` is the stock-flow model (``ctriage_flow``, also scored alone) blended with persistence
per horizon (:class:`AdaptiveBlend`): at each origin the weight of the flow model is the one of
0, 0.1, ..., 1 with the lowest MAE over the last ``BLEND_WINDOW_DAYS`` origins whose outcomes are
known at that origin; ``other_model_share`` of its rows is how often that weight was 0
(persistence alone). ``ctriage_select`` chooses per series between ``ctriage`` and the baselines
by past WIS (``triage.capacity.selection``); its ``other_model_share`` is how often it took
another model. Nothing uses an outcome after ``T``.

Quantile forecasts, for every model by the same rule (CHIME included: it publishes none, ours
are what makes its WIS comparable): ``triage.capacity.conformal``, from each model's own past
errors at every daily origin, bounded by construction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from triage.capacity import conformal, scoring, selection
from triage.capacity.chime import chime_forecast
from triage.capacity.series import DailySeries, flow_forecast

logger = logging.getLogger(__name__)

Forecaster = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
LEVELS = conformal.LEVELS
WARMUP_DAYS = 28
#: Scoring starts this many days after the warm-up (plus the horizon), as in the first backtests,
#: so that MAE stays comparable; the quantiles need ``conformal.MIN_ERRORS`` known errors.
FIRST_SCORED_AFTER_DAYS = 90
#: Origins before ``T`` whose forecasts the quantiles (and the selection) at ``T`` learn from.
INTERVAL_HISTORY_DAYS = max(conformal.LONG_WINDOW_DAYS, selection.WINDOW_DAYS)
SELECT = "ctriage_select"
#: The models ``ctriage_select`` may choose instead of ``ctriage``.
SELECTION_CANDIDATES = ("persistence", "ctriage_flow", "linear_trend", "seasonal_naive")
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


def blend_weights(
    y: np.ndarray, first: np.ndarray, second: np.ndarray, first_origin: int
) -> np.ndarray:
    """``[row, h - 1]`` weight of ``first`` at every origin from ``first_origin`` (see doc).

    ``first``/``second`` are [origins, horizon] forecasts made at every origin; without enough
    known errors the weight is 1 (the first model alone).
    """
    rows, horizon = first.shape
    weights = np.ones((rows, horizon))
    t = np.arange(first_origin, first_origin + rows)
    for h in range(1, horizon + 1):
        target = t + h
        actual = np.full(rows, np.nan)
        ok = target < y.size
        actual[ok] = y[target[ok]]
        # errors[w, row]: absolute error of the blend with weight w, NaN where not yet known
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
            weights[row, h - 1] = BLEND_WEIGHTS[best]
    return weights


def blend_forecasts(
    y: np.ndarray, first: np.ndarray, second: np.ndarray, first_origin: int
) -> np.ndarray:
    """Blend two [origins, horizon] forecast arrays made at every origin from ``first_origin``."""
    w = blend_weights(y, first, second, first_origin)
    return np.asarray(w * first + (1.0 - w) * second)


@dataclass(frozen=True)
class Forecasts:
    """Point forecasts [row, h - 1] at consecutive origins; ``blend_weight`` for a blend."""

    points: np.ndarray
    blend_weight: np.ndarray | None = None


def every_forecast(
    series: DailySeries, model: Forecaster, origins: range, horizon: int
) -> np.ndarray:
    """Point forecasts at every origin of ``origins``; a blend learns from earlier ones too."""
    return forecasts_of(series, model, origins, horizon).points


def forecasts_of(series: DailySeries, model: Forecaster, origins: range, horizon: int) -> Forecasts:
    """:func:`every_forecast` with the blend's weights (``blend_weight``) where it is a blend."""
    if not isinstance(model, AdaptiveBlend):
        return Forecasts(point_forecasts(series, model, origins, horizon))
    since = max(WARMUP_DAYS, origins.start - BLEND_WINDOW_DAYS - horizon)
    wider = range(since, origins.stop)
    first = point_forecasts(series, model.first, wider, horizon)
    second = point_forecasts(series, model.second, wider, horizon)
    w = blend_weights(series.occupancy, first, second, since)[origins.start - since :]
    keep = slice(origins.start - since, None)
    return Forecasts(w * first[keep] + (1.0 - w) * second[keep], w)


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


def point_forecasts(
    series: DailySeries, model: Forecaster, origins: Iterable[int], horizon: int
) -> np.ndarray:
    """Return [len(origins), horizon] point forecasts, each from the history up to its origin."""
    occ, adm = series.model_occupancy, series.admissions
    return np.array([model(occ[: t + 1], adm[: t + 1], horizon) for t in origins])


def quantile_forecasts(series: DailySeries, points: np.ndarray, first_origin: int) -> np.ndarray:
    """``[row, h - 1, level]`` quantiles around ``points`` made at every origin from the first."""
    return conformal.quantile_bands(series.occupancy, series.model_occupancy, points, first_origin)


def scored_origins(
    series: DailySeries, horizon: int, step_days: int, start: str | None, end: str | None
) -> np.ndarray:
    """Indices of the origins scored (module doc), within ``start``..``end`` (ISO dates)."""
    last = series.dates.size - 2
    scored_from = WARMUP_DAYS + FIRST_SCORED_AFTER_DAYS + horizon
    if start:
        scored_from = max(scored_from, int(series.dates.searchsorted(np.datetime64(start))))
    if end:
        last = min(last, int(series.dates.searchsorted(np.datetime64(end), side="right")) - 1)
    return np.arange(scored_from, last + 1, step_days)


def run_backtest(
    series: DailySeries,
    models: dict[str, Forecaster],
    horizon: int = 14,
    step_days: int = 7,
    start: str | None = None,
    end: str | None = None,
) -> list[dict[str, object]]:
    """Score every model at every horizon; one dict per model and horizon (see module doc).

    With ``ctriage`` and persistence among ``models`` the rows include ``ctriage_select``.
    """
    scored = scored_origins(series, horizon, step_days, start, end)
    if scored.size == 0:
        return []
    since = max(WARMUP_DAYS, int(scored[0]) - INTERVAL_HISTORY_DAYS - 2 * horizon)
    every = range(since, int(scored[-1]) + 1)
    rows_at = scored - since
    actual = scoring.outcomes(series.occupancy, np.arange(every.start, every.stop), horizon)
    bound = conformal.width_bound(conformal.census_scale(series.model_occupancy, since, len(every)))
    kept: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    results: list[dict[str, object]] = []
    for name, model in models.items():
        made = forecasts_of(series, model, every, horizon)
        quantiles = quantile_forecasts(series, made.points, since)
        kept[name] = (made.points, quantiles)
        alone = None if made.blend_weight is None else made.blend_weight[rows_at] == 0.0
        results += scoring.score_rows(
            name, actual[rows_at], made.points[rows_at], quantiles[rows_at], bound[rows_at], alone
        )
        logger.info("backtest %s: %s scored at %d origins", series.name, name, scored.size)
    candidates = [m for m in ("ctriage", *SELECTION_CANDIDATES) if m in kept]
    if candidates[:1] == ["ctriage"] and len(candidates) > 1:
        chosen = selection.select_by_wis(
            actual, [kept[m][0] for m in candidates], [kept[m][1] for m in candidates]
        )
        results += scoring.score_rows(
            SELECT, actual[rows_at], chosen.points[rows_at], chosen.quantiles[rows_at],
            bound[rows_at], chosen.choice[rows_at] > 0,
        )  # fmt: skip
    scoring.add_relative_wis(results)
    return results


@dataclass(frozen=True)
class SeriesForecast:
    """Our forecast from one origin: dates, expected and the quantiles per day.

    ``bands[h - 1, level]``: the quantiles at ``LEVELS`` (2.5, 10, 25, 50, 75, 90, 97.5 %).
    """

    origin: np.datetime64
    dates: list[np.datetime64]
    expected: np.ndarray
    bands: np.ndarray


def forecast_at(series: DailySeries, origin: int, horizon: int = 14) -> SeriesForecast:
    """Our forecast from ``origin`` (an index of the series) with its quantiles."""
    calib_from = max(WARMUP_DAYS, origin - INTERVAL_HISTORY_DAYS - 2 * horizon)
    ours = AdaptiveBlend(ctriage_flow, persistence)
    every = every_forecast(series, ours, range(calib_from, origin + 1), horizon)
    bands = quantile_forecasts(series, every, calib_from)[-1]
    start = series.dates[origin]
    return SeriesForecast(
        origin=np.datetime64(start.date()),
        dates=[
            np.datetime64((start + np.timedelta64(h, "D")).date()) for h in range(1, horizon + 1)
        ],
        expected=every[-1],
        bands=bands,
    )
