"""Length of ICU stay fitted to a daily series of occupancy and admissions.

A patient admitted on day ``t - j`` (mid-day) is still counted in the occupancy of day ``t`` with
probability ``S(j + 0.5)``, ``S`` the survival function of the length of stay. So the expected
occupancy is the admissions convolved with ``S``: ``y[t] = sum_j a[t - j] S(j + 0.5)``. With a
lognormal stay (the distribution ``triage.capacity.census`` forecasts with), the two parameters
are the ones that make this convolution closest (least squares) to the reported occupancy. The
varying admissions of epidemic waves make the shape identifiable, not only the mean; Little's law
(mean occupancy / mean admissions) gives the mean alone and is reported as a check.

Only days whose whole admission history (``max_lag_days``) is known are fitted: the occupancy of
earlier days includes patients whose admissions were never reported. "Leaving" is discharge,
transfer or death alike, which is what a bed forecast needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from triage.capacity.census import LengthOfStay
from triage.capacity.exceptions import CapacityDataReason, CapacityDataRejected
from triage.capacity.series import DailySeries

MAX_LAG_DAYS = 90
MIN_FIT_DAYS = 28
_MEAN_BOUNDS = (0.5, 60.0)
_SIGMA_BOUNDS = (0.05, 2.5)


@dataclass(frozen=True)
class StayFit:
    """The fitted lognormal stay of one series, with how well it explains the occupancy."""

    name: str
    stay: LengthOfStay
    first_day: str
    last_day: str
    fit_days: int
    rmse: float  # beds: reported occupancy against admissions convolved with the fitted stay
    mean_occupancy: float
    little_mean_days: float  # mean occupancy / mean admissions over the fitted days

    @property
    def median_days(self) -> float:
        """Median stay: exp(mu)."""
        return math.exp(self.stay.mu)

    def summary(self, period: str) -> dict[str, str | int | float]:
        """A JSON row of this fit, labelled with its ``period`` ("all", a year, ...)."""
        return {
            "series": self.name,
            "period": period,
            "first_day": self.first_day,
            "last_day": self.last_day,
            "fit_days": self.fit_days,
            "mean_days": round(self.stay.mean_days, 2),
            "median_days": round(self.median_days, 2),
            "sigma": round(self.stay.sigma, 3),
            "rmse_beds": round(self.rmse, 2),
            "mean_occupancy": round(self.mean_occupancy, 1),
            "little_mean_days": round(self.little_mean_days, 2),
        }


def expected_occupancy(admissions: np.ndarray, stay: LengthOfStay, max_lag_days: int) -> np.ndarray:
    """Occupancy implied by ``admissions`` alone (unknown admissions count as none)."""
    survival = stay.survival_curve(np.arange(max_lag_days) + 0.5)
    return np.convolve(np.nan_to_num(admissions), survival)[: len(admissions)]


def fittable_days(series: DailySeries, max_lag_days: int = MAX_LAG_DAYS) -> np.ndarray:
    """Indices of days with known occupancy and ``max_lag_days`` of known admissions up to them."""
    known = ~np.isnan(series.admissions)
    # windows[t] = number of known admission days in t - max_lag_days + 1 .. t
    windows = np.convolve(known.astype(int), np.ones(max_lag_days, dtype=int))[: len(known)]
    full = windows == max_lag_days
    return np.flatnonzero(full & ~np.isnan(series.occupancy))


def occupancy_rmse(
    series: DailySeries, stay: LengthOfStay, days: np.ndarray, max_lag_days: int = MAX_LAG_DAYS
) -> float:
    """Root mean square error (beds) of the occupancy ``stay`` implies on ``days``."""
    implied = expected_occupancy(series.admissions, stay, max_lag_days)
    return float(np.sqrt(np.mean((implied[days] - series.occupancy[days]) ** 2)))


def fit_length_of_stay(
    series: DailySeries,
    max_lag_days: int = MAX_LAG_DAYS,
    start: str | None = None,
    end: str | None = None,
) -> StayFit:
    """Fit a lognormal stay to the days of ``series`` between ``start`` and ``end`` (ISO dates).

    Raises ``CapacityDataRejected`` (``too_short``) with fewer than 28 fittable days, and
    (``no_admissions``) where the series reports no admissions or none in the fitted days.
    """
    if np.isnan(series.admissions).all():
        raise CapacityDataRejected(
            CapacityDataReason.NO_ADMISSIONS,
            f"{series.name}: icu_admissions are needed to fit a length of stay",
        )
    days = fittable_days(series, max_lag_days)
    dates = series.dates[days]
    if start is not None:
        days, dates = days[dates >= start], dates[dates >= start]
    if end is not None:
        days, dates = days[dates <= end], dates[dates <= end]
    if len(days) < MIN_FIT_DAYS:
        raise CapacityDataRejected(
            CapacityDataReason.TOO_SHORT,
            f"{series.name}: {len(days)} days with {max_lag_days} days of known admissions "
            f"before them in the window (need {MIN_FIT_DAYS})",
        )
    mean_admissions = float(np.mean(series.admissions[days]))
    if mean_admissions <= 0:
        raise CapacityDataRejected(
            CapacityDataReason.NO_ADMISSIONS, f"{series.name}: no admissions in the fitted days"
        )

    def stay_of(params: np.ndarray) -> LengthOfStay:
        return LengthOfStay(
            float(np.clip(math.exp(params[0]), *_MEAN_BOUNDS)),
            float(np.clip(math.exp(params[1]), *_SIGMA_BOUNDS)),
        )

    def loss(params: np.ndarray) -> float:
        return occupancy_rmse(series, stay_of(params), days, max_lag_days)

    mean_occupancy = float(np.mean(series.occupancy[days]))
    little = mean_occupancy / mean_admissions
    start_at = np.log([np.clip(little, *_MEAN_BOUNDS), 0.7])
    best = minimize(loss, start_at, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-6})
    stay = stay_of(best.x)
    return StayFit(
        name=series.name,
        stay=stay,
        first_day=str(dates[0].date()),
        last_day=str(dates[-1].date()),
        fit_days=len(days),
        rmse=occupancy_rmse(series, stay, days, max_lag_days),
        mean_occupancy=mean_occupancy,
        little_mean_days=little,
    )


def fit_by_year(series: DailySeries, max_lag_days: int = MAX_LAG_DAYS) -> list[StayFit]:
    """One fit per calendar year with at least 28 fittable days (how stable the stay is)."""
    days = fittable_days(series, max_lag_days)
    fits = []
    for year in sorted(set(series.dates[days].year)):
        try:
            fits.append(fit_length_of_stay(series, max_lag_days, f"{year}-01-01", f"{year}-12-31"))
        except CapacityDataRejected:
            continue  # a year with too few days or no admissions says nothing
    return fits
