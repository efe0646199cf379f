"""CHIME (Penn Medicine), re-implemented as the baseline to beat, and its fit before an origin.

CHIME v1.1.3 (``penn-chime`` 0.0.3 on PyPI, ``penn_chime/model/sir.py``): a discrete-time SIR
model seeded with ``1 / (market_share * rate)`` infected, whose admissions are the daily increase
of ``ever_infected * rate * market_share`` and whose census is the sum of the admissions of the
last ``los_days`` days (a fixed length of stay, no uncertainty). Given a doubling time and the
current census, CHIME places "today" (``i_day``) on the first stretch of the curve where the census
is closest to the current census, and applies ``relative_contact_rate`` (social distancing) from
today on.

Why not the package itself: it pins nothing, depends on streamlit, gspread, oauth2client and
altair, and calls ``logging.basicConfig(stream=stdout, level=INFO)`` at import. The functions below
follow its source line by line (names kept); ``tests/unit/test_capacity_chime.py`` checks them
against numbers computed with the package's own code.

The fit (ours; CHIME asks its users for these numbers): the ICU is CHIME's only disposition,
``market_share`` 1 (the series is a whole region), ``rate`` CHIME's ICU default 0.75%. Before each
origin the census growth rate ``r`` of the last two weeks is measured; ``r > 0`` becomes the
doubling time (no distancing), ``r <= 0`` becomes the ``relative_contact_rate`` that makes CHIME's
post-today growth equal ``r`` (doubling time at CHIME's default 4 days). The length of stay is
occupancy / admissions over the last 4 weeks where admissions are known (Little's law), else
CHIME's default 9 days.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

INFECTIOUS_DAYS = 14.0
ICU_RATE = 0.0075
DEFAULT_DOUBLING_DAYS = 4.0
DEFAULT_LOS_DAYS = 9


def get_growth_rate(doubling_time: float | None) -> float:
    """Average daily growth rate from a doubling time (CHIME)."""
    if doubling_time is None or doubling_time == 0.0:
        return 0.0
    return float(2.0 ** (1.0 / doubling_time) - 1.0)


def get_beta(
    intrinsic_growth_rate: float, gamma: float, susceptible: float, relative_contact_rate: float
) -> float:
    """Contact rate for a growth rate, reduced by distancing (CHIME)."""
    return (intrinsic_growth_rate + gamma) / susceptible * (1.0 - relative_contact_rate)


def sim_sir(
    s: float, i: float, r: float, gamma: float, i_day: int, policies: Sequence[tuple[float, int]]
) -> dict[str, np.ndarray]:
    """Simulate the SIR model one day at a time under (beta, n_days) policies (CHIME)."""
    n = s + i + r
    total_days = 1 + sum(days for _, days in policies)
    d_a = np.empty(total_days, dtype=int)
    s_a, i_a, r_a = (np.empty(total_days) for _ in range(3))
    index, d = 0, i_day
    for beta, n_days in policies:
        for _ in range(n_days):
            d_a[index], s_a[index], i_a[index], r_a[index] = d, s, i, r
            index += 1
            s_n = (-beta * s * i) + s
            i_n = (beta * s * i - gamma * i) + i
            r_n = gamma * i + r
            scale = n / (s_n + i_n + r_n)
            s, i, r = s_n * scale, i_n * scale, r_n * scale
            d += 1
    d_a[index], s_a[index], i_a[index], r_a[index] = d, s, i, r
    return {"day": d_a, "susceptible": s_a, "infected": i_a, "recovered": r_a}


def census_from_sir(
    raw: dict[str, np.ndarray], rate: float, market_share: float, los_days: int
) -> np.ndarray:
    """Admissions = daily increase of ever-infected * rate * share; census = last LOS days."""
    ever = (raw["infected"] + raw["recovered"]) * rate * market_share
    admits = np.empty_like(ever)
    admits[0] = np.nan
    admits[1:] = ever[1:] - ever[:-1]
    n_days = ever.shape[0]
    cumsum = np.empty(n_days + los_days)
    cumsum[: los_days + 1] = 0.0
    cumsum[los_days + 1 :] = admits[1:].cumsum()
    return np.asarray(cumsum[los_days:] - cumsum[:-los_days])


def project(
    current_census: float,
    population: float,
    doubling_time: float,
    relative_contact_rate: float,
    los_days: int,
    n_days: int,
    rate: float = ICU_RATE,
    market_share: float = 1.0,
    infectious_days: float = INFECTIOUS_DAYS,
) -> np.ndarray:
    """CHIME's census for days 1..``n_days`` after today (doubling-time mode, distancing today)."""
    infected = 1.0 / market_share / rate
    susceptible = population - infected
    gamma = 1.0 / infectious_days
    growth = get_growth_rate(doubling_time)
    beta = get_beta(growth, gamma, susceptible, 0.0)
    beta_t = get_beta(growth, gamma, susceptible, relative_contact_rate)
    seed = sim_sir(susceptible, infected, 0.0, gamma, 0, [(beta, n_days)])
    census = census_from_sir(seed, rate, market_share, los_days)
    peak_day = int(census.argmax())
    # CHIME's get_argmin_ds: "today" is before the peak, where the census is closest.
    i_day = int(((census[:peak_day] - current_census) ** 2.0).argmin()) if peak_day > 0 else 0
    raw = sim_sir(susceptible, infected, 0.0, gamma, -i_day, [(beta, i_day), (beta_t, n_days)])
    census = census_from_sir(raw, rate, market_share, los_days)
    return census[i_day + 1 : i_day + 1 + n_days]


def chime_forecast(
    occupancy: np.ndarray,
    admissions: np.ndarray,
    population: float,
    horizon_days: int = 14,
    window_days: int = 14,
) -> np.ndarray:
    """CHIME fitted on the history (oldest first) and projected ``horizon_days`` ahead."""
    recent = np.log1p(occupancy[-window_days:])
    slope = float(np.polyfit(np.arange(recent.size), recent, 1)[0]) if recent.size > 2 else 0.0
    gamma = 1.0 / INFECTIOUS_DAYS
    if slope > 1e-3:
        doubling, distancing = math.log(2.0) / math.log1p(slope), 0.0
    else:
        doubling = DEFAULT_DOUBLING_DAYS
        g0 = get_growth_rate(doubling)
        distancing = float(np.clip(1.0 - (slope + gamma) / (g0 + gamma), 0.0, 0.99))
    los = DEFAULT_LOS_DAYS
    occ28, adm28 = occupancy[-28:], admissions[-28:]
    known = ~np.isnan(adm28)
    if known.sum() >= 14 and adm28[known].mean() > 0:
        los = int(np.clip(round(occ28[known].mean() / adm28[known].mean()), 3, 30))
    n_days = max(horizon_days, 365)
    path = project(float(occupancy[-1]), population, doubling, distancing, los, n_days=n_days)
    return np.asarray(path[:horizon_days])
