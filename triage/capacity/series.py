"""Daily census series: reading them, and the stock-flow forecast of ICU occupancy.

A daily series is a CSV with ``date`` (ISO) and ``icu_occupancy``, and where known
``icu_admissions``, ``hospital_occupancy``, ``hospital_admissions``, ``icu_capacity``. Missing
days are added as gaps; occupancy gaps are interpolated linearly for the models' input (never
scored), admission gaps stay unknown (the arrival fit skips them). Negative occupancy is refused;
negative admissions (published corrections) count as unknown.

Stock-flow model (``flow_forecast``): tomorrow's occupancy is today's survivors plus tomorrow's
admissions, ``y[t+1] = (1 - delta) * y[t] + a[t+1]``. ``delta``, the daily leaving hazard
(discharge, transfer or death), is estimated from the last 4 weeks of occupancy and admissions
where both are known (ratio estimator), else ``1 / los_mean_days``. Admissions come from
``triage.capacity.arrivals`` (damped exponential growth fitted on the last two weeks), using the
reported admissions where known and the admissions implied by the occupancy otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from triage.capacity.arrivals import fit_arrivals
from triage.capacity.exceptions import CapacityDataReason, CapacityDataRejected

OPTIONAL_COLUMNS = (
    "icu_admissions",
    "hospital_occupancy",
    "hospital_admissions",
    "icu_capacity",
)
MIN_DAYS = 60


@dataclass(frozen=True)
class DailySeries:
    """One region's or hospital's daily series on a complete daily calendar (NaN = unknown)."""

    name: str
    dates: pd.DatetimeIndex
    occupancy: np.ndarray
    admissions: np.ndarray
    capacity: np.ndarray

    @property
    def model_occupancy(self) -> np.ndarray:
        """Occupancy with gaps interpolated (model input only, never scored)."""
        return np.asarray(
            pd.Series(self.occupancy).interpolate(limit_direction="both").to_numpy(dtype=float)
        )


def from_frame(frame: pd.DataFrame, name: str) -> DailySeries:
    """Validate a frame with the documented columns and put it on a daily calendar."""
    if "date" not in frame.columns or "icu_occupancy" not in frame.columns:
        raise CapacityDataRejected(
            CapacityDataReason.MISSING_COLUMN,
            f"{name}: needs columns date and icu_occupancy, has {list(frame.columns)}",
        )
    try:
        dates = pd.to_datetime(frame["date"].astype(str).str[:10], format="%Y-%m-%d")
    except ValueError as e:
        raise CapacityDataRejected(CapacityDataReason.BAD_DATE, f"{name}: {e}") from e
    if dates.duplicated().any():
        first = dates[dates.duplicated()].iloc[0].date()
        raise CapacityDataRejected(CapacityDataReason.DUPLICATE_DATE, f"{name}: {first} twice")
    data = frame.assign(date=dates).set_index("date").sort_index()
    calendar = pd.date_range(data.index.min(), data.index.max(), freq="D")
    data = data.reindex(calendar)

    def column(col: str) -> np.ndarray:
        if col not in data.columns:
            return np.full(len(calendar), np.nan)
        values = pd.to_numeric(data[col], errors="coerce").to_numpy(dtype=float)
        if col == "icu_occupancy" and np.nanmin(values, initial=0.0) < 0:
            raise CapacityDataRejected(CapacityDataReason.NEGATIVE_COUNT, f"{name}: {col} < 0")
        # Negative admissions are published corrections of earlier days: unknown, not counts.
        return np.where(values < 0, np.nan, values)

    occupancy = column("icu_occupancy")
    if np.count_nonzero(~np.isnan(occupancy)) < MIN_DAYS:
        raise CapacityDataRejected(
            CapacityDataReason.TOO_SHORT, f"{name}: fewer than {MIN_DAYS} days of icu_occupancy"
        )
    return DailySeries(
        name=name,
        dates=calendar,
        occupancy=occupancy,
        admissions=column("icu_admissions"),
        capacity=column("icu_capacity"),
    )


def read_daily_csv(path: Path, name: str | None = None) -> DailySeries:
    """Read a daily series CSV (columns documented in the module docstring)."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise CapacityDataRejected(CapacityDataReason.UNREADABLE, f"{path}: {e}") from e
    return from_frame(frame, name or path.stem)


def leaving_hazard(
    occupancy: np.ndarray, admissions: np.ndarray, default: float, window_days: int = 28
) -> float:
    """Daily probability of leaving the ICU, from the last ``window_days`` (ratio estimator)."""
    occ, adm = occupancy[-window_days - 1 :], admissions[-window_days:]
    before, after = occ[:-1], occ[1:]
    known = ~(np.isnan(before) | np.isnan(after) | np.isnan(adm))
    if known.sum() < window_days // 2 or before[known].sum() <= 0:
        return default
    left = before[known] + adm[known] - after[known]
    return float(np.clip(left.sum() / before[known].sum(), 0.02, 0.4))


def flow_forecast(
    occupancy: np.ndarray,
    admissions: np.ndarray,
    horizon_days: int = 14,
    los_mean_days: float = 10.0,
    window_days: int = 14,
    damping: float = 0.85,
) -> np.ndarray:
    """Expected occupancy on days 1..``horizon_days`` after the last day of the history."""
    delta = leaving_hazard(occupancy, admissions, 1.0 / los_mean_days)
    recent_occ = occupancy[-window_days - 1 :]
    implied = np.maximum(0.0, recent_occ[1:] - (1.0 - delta) * recent_occ[:-1])
    reported = admissions[-window_days:]
    arrivals_in = np.where(np.isnan(reported), implied, reported)
    arrivals = fit_arrivals(list(arrivals_in), horizon_days, window_days, damping).expected
    path = np.empty(horizon_days)
    level = float(occupancy[-1])
    for h in range(horizon_days):
        level = (1.0 - delta) * level + arrivals[h]
        path[h] = level
    return path
