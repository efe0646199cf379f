"""ICU occupancy forecast for the next days: pure arithmetic, no fitting at run time.

Model: the length of an ICU stay is lognormal (``los_mean_days``, log-scale ``los_sigma``).
Each current occupant, already ``e`` days in, is still there ``d`` days from now with probability
``S(e + d) / S(e)`` (``S`` the survival function). Each pipeline patient (a scored CT) is admitted
with probability ``p_icu`` at ``max(ct_time + admission_delay_days, now)`` and then stays like any
other patient. Occupancy on a day is a sum of independent Bernoulli variables (Poisson-binomial):
its exact distribution comes from a dynamic programme, and with it the expectation, the 80%
interval (10th and 90th percentiles) and ``P(occupancy > capacity)``.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from triage.exceptions import ConfigRejected, ConfigRejectionReason

logger = logging.getLogger(__name__)

_FORECAST_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://ctriage.invalid/forecasts")
_DAY_S = 86400.0


@dataclass(frozen=True)
class Occupant:
    """A patient in an ICU bed now (from the census), admitted at ``admitted_at``."""

    patient: str
    admitted_at: datetime


@dataclass(frozen=True)
class PipelinePatient:
    """A scored patient not (yet) in the ICU: ``p_icu`` the admission probability, ``at`` the CT."""

    patient: str
    p_icu: float
    at: datetime


@dataclass(frozen=True)
class LengthOfStay:
    """Lognormal ICU length of stay with mean ``mean_days`` and log-scale sigma ``sigma``."""

    mean_days: float = 9.0
    sigma: float = 0.8

    def __post_init__(self) -> None:
        if not (self.mean_days > 0 and self.sigma > 0):
            raise ConfigRejected(
                ConfigRejectionReason.INVALID_LOS_PARAMETERS,
                f"mean_days={self.mean_days}, sigma={self.sigma} must both be > 0",
            )

    @property
    def mu(self) -> float:
        """Log-scale location: mean = exp(mu + sigma^2 / 2)."""
        return math.log(self.mean_days) - self.sigma**2 / 2.0

    def survival(self, t_days: float) -> float:
        """Return P(stay > t_days)."""
        if t_days <= 0:
            return 1.0
        z = (math.log(t_days) - self.mu) / (self.sigma * math.sqrt(2.0))
        return 0.5 * math.erfc(z)

    def still_there(self, elapsed_days: float, extra_days: float) -> float:
        """Return P(stay > elapsed + extra | stay > elapsed)."""
        alive = self.survival(max(elapsed_days, 0.0))
        if alive <= 0.0:
            return 0.0
        return min(1.0, self.survival(max(elapsed_days, 0.0) + extra_days) / alive)


@dataclass(frozen=True)
class DayForecast:
    """Occupancy forecast for ``day`` days after issue (on calendar ``date``)."""

    day: int
    date: date
    expected: float
    lower80: int
    upper80: int
    p_exceed: float


@dataclass(frozen=True)
class CapacityForecast:
    """ICU forecast of one hospital issued at ``issued_at`` against ``capacity`` beds."""

    hospital: str
    issued_at: datetime
    capacity: int
    days: list[DayForecast] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """Return one row per day for the ``forecasts`` table (deterministic ``forecast_id``)."""
        issued = self.issued_at.isoformat()
        return [
            {
                "forecast_id": str(
                    uuid.uuid5(_FORECAST_NAMESPACE, f"{self.hospital}|{issued}|{d.day}")
                ),
                "hospital": self.hospital,
                "issued_at": self.issued_at,
                "day": d.date,
                "expected": d.expected,
                "lower80": d.lower80,
                "upper80": d.upper80,
                "capacity": self.capacity,
                "p_exceed": d.p_exceed,
            }
            for d in self.days
        ]


def poisson_binomial(probabilities: Sequence[float]) -> np.ndarray:
    """Return ``P(K = k)`` for k = 0..n, K the number of successes of independent Bernoullis."""
    dist = np.zeros(len(probabilities) + 1)
    dist[0] = 1.0
    for n, p in enumerate(probabilities, start=1):
        # After n trials the support is 0..n; shift the mass of a success up by one.
        dist[1 : n + 1] = dist[1 : n + 1] * (1.0 - p) + dist[0:n] * p
        dist[0] *= 1.0 - p
    return dist


def quantile(dist: np.ndarray, q: float) -> int:
    """Return the smallest k with ``P(K <= k) >= q``."""
    cdf = np.cumsum(dist)
    return int(np.searchsorted(cdf, q - 1e-12, side="left"))


def forecast_icu(
    occupants: Iterable[Occupant],
    pipeline: Iterable[PipelinePatient],
    now: datetime,
    capacity_beds: int,
    days: int = 7,
    los_mean_days: float = 9.0,
    los_sigma: float = 0.8,
    admission_delay_days: float = 1.0,
    hospital: str = "unknown",
) -> CapacityForecast:
    """Forecast ICU occupancy for days 1..``days`` after ``now`` (timezone-aware datetimes)."""
    if capacity_beds < 0:
        raise ConfigRejected(ConfigRejectionReason.NEGATIVE_CAPACITY, f"{capacity_beds} beds")
    los = LengthOfStay(los_mean_days, los_sigma)
    _check_aware(now, "now")
    occupants = list(occupants)
    pipeline = list(pipeline)
    for occ in occupants:
        _check_aware(occ.admitted_at, f"admitted_at of {occ.patient}")
    for pat in pipeline:
        _check_aware(pat.at, f"CT time of {pat.patient}")
        if not (0.0 <= pat.p_icu <= 1.0):
            raise ConfigRejected(
                ConfigRejectionReason.PROBABILITY_OUT_OF_RANGE,
                f"p_icu {pat.p_icu} of {pat.patient}",
            )
    delay = timedelta(days=admission_delay_days)
    out: list[DayForecast] = []
    for d in range(1, days + 1):
        target = now + timedelta(days=d)
        probs = [
            los.still_there((now - occ.admitted_at).total_seconds() / _DAY_S, float(d))
            for occ in occupants
        ]
        for pat in pipeline:
            admit_at = max(pat.at + delay, now)
            if target >= admit_at:
                stay_days = (target - admit_at).total_seconds() / _DAY_S
                probs.append(pat.p_icu * los.survival(stay_days))
        dist = poisson_binomial(probs)
        out.append(
            DayForecast(
                day=d,
                date=target.date(),
                expected=float(sum(probs)),
                lower80=quantile(dist, 0.1),
                upper80=quantile(dist, 0.9),
                p_exceed=float(min(1.0, max(0.0, dist[capacity_beds + 1 :].sum()))),
            )
        )
    logger.debug(
        "ICU forecast for %s: %d occupants, %d pipeline patients",
        hospital,
        len(occupants),
        len(pipeline),
    )
    return CapacityForecast(hospital=hospital, issued_at=now, capacity=capacity_beds, days=out)


def occupants_from_census(bundle: Mapping[str, Any]) -> list[Occupant]:
    """Return the ICU occupants of a FHIR census Bundle: in-progress ICU Encounters, by subject."""
    from triage.icu import icu_change

    occupants: list[Occupant] = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        change = icu_change(resource)
        if change is None or not change.admitted:
            continue
        reference = str((resource.get("subject") or {}).get("reference", ""))
        occupants.append(Occupant(patient=reference.rsplit("/", 1)[-1], admitted_at=change.at))
    return occupants


def _check_aware(moment: datetime, what: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ConfigRejected(ConfigRejectionReason.NAIVE_DATETIME, f"{what} has no timezone")
