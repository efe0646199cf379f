"""CHIME re-implementation checked against numbers from penn-chime 0.0.3's own code."""

from __future__ import annotations

import numpy as np
import pytest

from triage.capacity.chime import chime_forecast, get_growth_rate, project

pytestmark = pytest.mark.unit

# penn_chime.model.sir (penn-chime 0.0.3, CHIME v1.1.3): sim_sir, calculate_dispositions,
# calculate_admits, calculate_census, get_argmin_ds with population 1e6, ICU rate 0.0075,
# market share 1, LOS 9 days, current census 120, doubling time 5 days, distancing 0.3,
# n_days 365 (computed once with the package's source; the package is not a dependency).
PENN_CHIME_CENSUS = [123.709864, 133.362862, 143.199939, 153.147392, 163.113581, 172.986189,
                     182.629215]  # fmt: skip


def test_projection_matches_penn_chime() -> None:
    census = project(120.0, 1_000_000, 5.0, 0.3, 9, n_days=365)
    assert census[:7] == pytest.approx(PENN_CHIME_CENSUS, abs=1e-6)


def test_growth_rate_from_doubling_time() -> None:
    assert (1 + get_growth_rate(4.0)) ** 4 == pytest.approx(2.0)
    assert get_growth_rate(None) == 0.0


def test_fitted_chime_follows_the_direction_of_the_census() -> None:
    days = np.arange(40, dtype=float)
    rising = 100 * 1.05**days
    falling = 1000 * 0.97**days
    no_admissions = np.full(40, np.nan)
    up = chime_forecast(rising, no_admissions, 1e7, horizon_days=7)
    down = chime_forecast(falling, no_admissions, 1e7, horizon_days=7)
    assert up.shape == (7,) and up[-1] > rising[-1]
    assert down[-1] < up[-1] / rising[-1] * falling[-1]
