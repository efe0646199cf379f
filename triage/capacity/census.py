"""Patient-level ICU (or ventilator) occupancy forecast of one hospital unit.

Model: the length of an ICU stay is lognormal (``los_mean_days``, log-scale ``los_sigma``).
Each current occupant, already ``e`` days in, is still there ``d`` days from now with probability
``S(e + d) / S(e)`` (``S`` the survival function). Each pipeline patient (a scored CT) is admitted
with probability ``p_icu`` at ``max(ct_time + admission_delay_days, now)`` and then stays like any
other patient. Unannounced arrivals (forecast by ``triage.capacity.arrivals`` from recent
admissions) come as a Poisson process of daily rate ``arrivals[j]`` whose level is itself uncertain
(lognormal multiplier, log-sd ``arrival_log_sd``), arriving mid-day and staying like the others.

Occupancy on a day is a Poisson-binomial (occupants and pipeline, exact dynamic programme)
convolved with a Poisson-lognormal mixture (arrivals, Gauss-Hermite nodes): from it the
expectation, the 80% and 95% intervals and ``P(occupancy > capacity)``. The probability that
capacity is breached on *any* day of the horizon needs the joint path, so it is simulated
(seeded, 2,000 paths).
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
from scipy.special import erfc, ndtri
from scipy.stats import poisson

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

    mean_days: float
    sigma: float

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

    def survival_curve(self, t_days: np.ndarray) -> np.ndarray:
        """Return P(stay > t) for each t of an array (1 where t <= 0)."""
        t = np.asarray(t_days, dtype=float)
        z = (np.log(np.maximum(t, 1e-300)) - self.mu) / (self.sigma * math.sqrt(2.0))
        return np.where(t > 0, 0.5 * erfc(z), 1.0)

    def still_there(self, elapsed_days: float, extra_days: float) -> float:
        """Return P(stay > elapsed + extra | stay > elapsed)."""
        alive = self.survival(max(elapsed_days, 0.0))
        if alive <= 0.0:
            return 0.0
        return min(1.0, self.survival(max(elapsed_days, 0.0) + extra_days) / alive)


#: Length of an ICU stay (COVID-19), FITTED on REAL data: Italian Civil Protection national ICU
#: occupancy and admissions, 2021-03-02 .. 2025-01-08 (``triage.capacity.stay``, ``ctriage
#: capacity fit-stay``): mean 14.1 days, log-sd 0.72 (median 10.9). It explains the reported
#: occupancy with an RMSE of 109 beds (mean 421) where the former assumption (mean 9, log-sd 0.8)
#: gave 319. Stays shortened after 2021 (2023-24: mean 9.3-9.7): fit your own series and set
#: ``CTRIAGE_WORKER__ICU_STAY_MEAN_DAYS`` / ``_SIGMA``.
ICU_STAY = LengthOfStay(mean_days=14.1, sigma=0.72)
#: Duration of invasive mechanical ventilation: an ASSUMPTION, not fitted (no public series of
#: ventilators in use is in ../shared/data): mean 10 days, log-sd 0.7 (median 7.8 days), in the
#: range reported for COVID-19 ventilated patients. Set: ``CTRIAGE_WORKER__VENTILATION_MEAN_DAYS``
#: / ``_SIGMA``.
VENTILATION = LengthOfStay(mean_days=10.0, sigma=0.7)


@dataclass(frozen=True)
class DayForecast:
    """Occupancy forecast for ``day`` days after issue (on calendar ``date``)."""

    day: int
    date: date
    expected: float
    lower80: int
    upper80: int
    p_exceed: float
    lower95: int = 0
    upper95: int = 0
    median: int = 0


@dataclass(frozen=True)
class CapacityForecast:
    """ICU forecast of one hospital issued at ``issued_at`` against ``capacity`` beds."""

    hospital: str
    issued_at: datetime
    capacity: int
    days: list[DayForecast] = field(default_factory=list)
    #: P(occupancy > capacity on at least one day of the horizon), simulated.
    p_breach: float = 0.0

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
                "lower95": d.lower95,
                "upper95": d.upper95,
            }
            for d in self.days
        ]


def poisson_binomial(probabilities: Sequence[float]) -> np.ndarray:
    """Return ``P(K = k)`` for k = 0..n, K the number of successes of independent Bernoullis.

    The product of the n polynomials ``(1 - p) + p z`` multiplied pairwise, level by level
    (whole levels at once while the polynomials are short): O(n log n) array work instead of n
    passes over the whole distribution, the same result to rounding.
    """
    n = len(probabilities)
    size = 1 << max(0, (n - 1).bit_length())  # pad with certain failures (1 + 0 z)
    polys = np.zeros((size, 2))
    polys[:, 0] = 1.0
    p = np.asarray(probabilities, dtype=float)
    polys[:n, 0], polys[:n, 1] = 1.0 - p, p
    while len(polys) > 1:
        left, right = polys[0::2], polys[1::2]
        width = polys.shape[1]
        if len(polys) >= width:  # many short polynomials: convolve them all at once
            out = np.zeros((len(left), 2 * width - 1))
            for j in range(width):
                out[:, j : j + width] += left[:, j : j + 1] * right
        else:
            out = np.array([np.convolve(a, b) for a, b in zip(left, right, strict=True)])
        polys = out
    return np.maximum(polys[0][: n + 1], 0.0)


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
    los_mean_days: float = ICU_STAY.mean_days,
    los_sigma: float = ICU_STAY.sigma,
    admission_delay_days: float = 1.0,
    hospital: str = "unknown",
    arrivals: Sequence[float] | None = None,
    arrival_log_sd: float = 0.0,
    simulations: int = 2000,
) -> CapacityForecast:
    """Forecast occupancy for days 1..``days`` after ``now`` (timezone-aware datetimes).

    ``arrivals[j]`` is the expected number of unannounced admissions on day ``j + 1`` (patients
    not already counted in ``pipeline``); missing days count as none.
    """
    occupants, pipeline = list(occupants), list(pipeline)
    rates = _checked_inputs(capacity_beds, now, occupants, pipeline, arrivals, arrival_log_sd, days)
    los = LengthOfStay(los_mean_days, los_sigma)
    delay = timedelta(days=admission_delay_days)
    elapsed = [(now - occ.admitted_at).total_seconds() / _DAY_S for occ in occupants]
    admit_offsets = [(max(pat.at + delay, now) - now).total_seconds() / _DAY_S for pat in pipeline]
    out: list[DayForecast] = []
    for d in range(1, days + 1):
        target = now + timedelta(days=d)
        probs = [los.still_there(e, float(d)) for e in elapsed]
        for pat, offset in zip(pipeline, admit_offsets, strict=True):
            if d >= offset:
                probs.append(pat.p_icu * los.survival(d - offset))
        dist = poisson_binomial(probs)
        arriving_mean = sum(rates[j] * los.survival(d - j - 0.5) for j in range(d))
        if arriving_mean > 0.0:
            dist = np.convolve(dist, poisson_lognormal(arriving_mean, arrival_log_sd))
        out.append(
            DayForecast(
                day=d,
                date=target.date(),
                expected=float(sum(probs) + arriving_mean),
                lower80=quantile(dist, 0.1),
                upper80=quantile(dist, 0.9),
                p_exceed=float(min(1.0, max(0.0, dist[capacity_beds + 1 :].sum()))),
                lower95=quantile(dist, 0.025),
                upper95=quantile(dist, 0.975),
                median=quantile(dist, 0.5),
            )
        )
    p_breach = _simulate_breach(
        los,
        elapsed,
        [(pat.p_icu, offset) for pat, offset in zip(pipeline, admit_offsets, strict=True)],
        rates,
        arrival_log_sd,
        capacity_beds,
        simulations,
        seed=f"{hospital}|{now.isoformat()}",
    )
    logger.debug(
        "ICU forecast for %s: %d occupants, %d pipeline patients, %.1f arrivals",
        hospital,
        len(occupants),
        len(pipeline),
        sum(rates),
    )
    return CapacityForecast(
        hospital=hospital,
        issued_at=now,
        capacity=capacity_beds,
        days=out,
        p_breach=max(p_breach, max((d.p_exceed for d in out), default=0.0)),
    )


def _checked_inputs(
    capacity_beds: int,
    now: datetime,
    occupants: list[Occupant],
    pipeline: list[PipelinePatient],
    arrivals: Sequence[float] | None,
    arrival_log_sd: float,
    days: int,
) -> list[float]:
    """Refuse bad forecast inputs (:class:`ConfigRejected`); the arrival rate of each day."""
    if capacity_beds < 0:
        raise ConfigRejected(ConfigRejectionReason.NEGATIVE_CAPACITY, f"{capacity_beds} beds")
    _check_aware(now, "now")
    rates = [float(r) for r in (arrivals or [])][:days]
    rates += [0.0] * (days - len(rates))
    if any(not (r >= 0.0 and math.isfinite(r)) for r in rates) or not arrival_log_sd >= 0.0:
        raise ConfigRejected(
            ConfigRejectionReason.INVALID_ARRIVALS,
            f"arrival rates {rates} and log-sd {arrival_log_sd} must be finite and >= 0",
        )
    for occ in occupants:
        _check_aware(occ.admitted_at, f"admitted_at of {occ.patient}")
    for pat in pipeline:
        _check_aware(pat.at, f"CT time of {pat.patient}")
        if not (0.0 <= pat.p_icu <= 1.0):
            raise ConfigRejected(
                ConfigRejectionReason.PROBABILITY_OUT_OF_RANGE,
                f"p_icu {pat.p_icu} of {pat.patient}",
            )
    return rates


def poisson_lognormal(mean: float, log_sd: float, nodes: int = 7) -> np.ndarray:
    """Return ``P(K = k)`` for K ~ Poisson(mean * M), M lognormal with E[M] = 1 and log-sd."""
    if log_sd <= 0.0:
        scales = np.array([1.0])
        weights = np.array([1.0])
    else:
        x, w = np.polynomial.hermite_e.hermegauss(nodes)
        scales = np.exp(log_sd * x - log_sd**2 / 2.0)
        weights = w / w.sum()
    top = int(mean * scales.max() + 10.0 * math.sqrt(mean * scales.max()) + 20.0)
    k = np.arange(top + 1)
    pmf = sum(wi * poisson.pmf(k, mean * si) for wi, si in zip(weights, scales, strict=True))
    return np.asarray(pmf / pmf.sum())


def _simulate_breach(
    los: LengthOfStay,
    elapsed: Sequence[float],
    pipeline: Sequence[tuple[float, float]],
    rates: Sequence[float],
    arrival_log_sd: float,
    capacity: int,
    simulations: int,
    seed: str,
) -> float:
    """Return P(occupancy > capacity on some day 1..len(rates)) over simulated paths."""
    days = len(rates)
    if simulations <= 0 or days == 0:
        return 0.0
    rng = np.random.default_rng(uuid.uuid5(_FORECAST_NAMESPACE, seed).int % 2**63)
    horizon = np.arange(1, days + 1, dtype=float)
    occupancy = np.zeros((simulations, days))

    def stays(n: int, at_least: np.ndarray | None = None) -> np.ndarray:
        # Inverse survival sampling, conditioned on having stayed ``at_least`` days already
        # (None: a new stay, survival 1; skipping the curve keeps the draws, saves its cost).
        u = rng.uniform(size=n)
        if at_least is not None:
            u *= los.survival_curve(at_least)
        return np.asarray(np.exp(los.mu + los.sigma * ndtri(1.0 - u)))

    if elapsed:
        e = np.asarray(elapsed, dtype=float)
        total = stays(simulations * len(e), np.tile(np.maximum(e, 0.0), simulations))
        remaining = total.reshape(simulations, len(e)) - np.maximum(e, 0.0)
        occupancy += (remaining[:, :, None] > horizon).sum(axis=1)
    if pipeline:
        p = np.array([v[0] for v in pipeline])
        offset = np.array([v[1] for v in pipeline])
        # only the admitted (draw, patient) pairs take a bed: their stays alone are sampled
        draw, who = np.nonzero(rng.uniform(size=(simulations, len(p))) < p)
        occupancy += _occupied(draw, offset[who], stays(len(draw)), horizon, simulations)
    if any(r > 0 for r in rates):
        level = np.exp(arrival_log_sd * rng.standard_normal(simulations) - arrival_log_sd**2 / 2)
        counts = rng.poisson(level[:, None] * np.asarray(rates)[None, :])
        draw, day = np.nonzero(counts)
        n = counts[draw, day]
        draw, day = np.repeat(draw, n), np.repeat(day, n)
        occupancy += _occupied(draw, day + 0.5, stays(len(draw)), horizon, simulations)
    return float((occupancy > capacity).any(axis=1).mean())


def _occupied(
    draw: np.ndarray, start: np.ndarray, stay: np.ndarray, horizon: np.ndarray, simulations: int
) -> np.ndarray:
    """Beds taken per (draw, day of ``horizon``) by stays beginning ``start`` days from now."""
    taken = np.zeros((simulations, len(horizon)), dtype=np.int64)
    for d, at in enumerate(horizon):
        since = at - start
        taken[:, d] = np.bincount(draw[(since >= 0) & (stay > since)], minlength=simulations)
    return taken


def occupants_from_census(bundle: Mapping[str, Any]) -> list[Occupant]:
    """Return the ICU occupants of a FHIR census Bundle: in-progress ICU Encounters, by subject."""
    from triage.fhir.icu import icu_change

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
