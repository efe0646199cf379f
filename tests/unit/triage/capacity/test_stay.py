"""Length of ICU stay fitted to occupancy and admissions: simulated truth, refusals, REAL Italy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from streams.cli.root import app
from streams.settings import WorkerSettings
from triage.capacity import dpc
from triage.capacity.census import ICU_STAY, VENTILATION, LengthOfStay
from triage.capacity.exceptions import CapacityDataReason, CapacityDataRejected
from triage.capacity.series import from_frame
from triage.capacity.stay import (
    MAX_LAG_DAYS,
    fit_by_year,
    fit_length_of_stay,
    fittable_days,
    occupancy_rmse,
)
from triage.capacity.unit_forecast import forecast_from_census

pytestmark = pytest.mark.unit


def simulated_frame(
    mean_days: float, sigma: float, n_days: int = 700, seed: int = 3
) -> pd.DataFrame:
    """Two epidemic waves of admissions; every patient draws a lognormal stay, counted daily."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_days)
    rate = 5 + 60 * np.exp(-(((t - 200) / 40) ** 2)) + 35 * np.exp(-(((t - 480) / 60) ** 2))
    admissions = rng.poisson(rate)
    mu = np.log(mean_days) - sigma**2 / 2
    occupancy = np.zeros(n_days, dtype=int)
    for day, count in enumerate(admissions):
        stays = np.exp(rng.normal(mu, sigma, size=count))
        # admitted mid-day, counted at the end of each later day while still there
        for stay in stays:
            occupancy[day : min(n_days, day + int(np.floor(stay + 0.5)))] += 1
    dates = pd.date_range("2021-01-01", periods=n_days, freq="D").strftime("%Y-%m-%d")
    return pd.DataFrame({"date": dates, "icu_occupancy": occupancy, "icu_admissions": admissions})


@pytest.mark.parametrize(("mean_days", "sigma"), [(14.0, 0.7), (6.0, 1.0)])
def test_fit_recovers_the_stay_patients_were_drawn_from(mean_days: float, sigma: float) -> None:
    series = from_frame(simulated_frame(mean_days, sigma), "simulated")
    fit = fit_length_of_stay(series)
    assert fit.stay.mean_days == pytest.approx(mean_days, rel=0.06)
    assert fit.stay.sigma == pytest.approx(sigma, rel=0.15)
    assert fit.little_mean_days == pytest.approx(mean_days, rel=0.1)
    assert fit.fit_days == 700 - MAX_LAG_DAYS + 1
    wrong = LengthOfStay(mean_days * 0.6, sigma)
    assert fit.rmse < occupancy_rmse(series, wrong, fittable_days(series)) / 2


def test_only_days_with_their_whole_admission_history_are_fitted() -> None:
    frame = simulated_frame(10.0, 0.7, n_days=300)
    frame.loc[150, "icu_admissions"] = -3  # a published correction: unknown
    series = from_frame(frame, "gap")
    days = fittable_days(series)
    assert days[0] == MAX_LAG_DAYS - 1
    assert not ((days >= 150) & (days < 150 + MAX_LAG_DAYS)).any()
    assert days[-1] == 299


def test_window_and_years_restrict_the_fitted_days() -> None:
    series = from_frame(simulated_frame(10.0, 0.7), "simulated")
    fit = fit_length_of_stay(series, start="2021-06-01", end="2021-09-30")
    assert (fit.first_day, fit.last_day, fit.fit_days) == ("2021-06-01", "2021-09-30", 122)
    years = fit_by_year(series)
    assert [f.first_day[:4] for f in years] == ["2021", "2022"]
    assert all(f.stay.mean_days == pytest.approx(10.0, rel=0.15) for f in years)


def test_series_without_admissions_or_history_are_refused() -> None:
    frame = simulated_frame(10.0, 0.7, n_days=200)
    with pytest.raises(CapacityDataRejected) as refused:
        fit_length_of_stay(from_frame(frame.drop(columns="icu_admissions"), "no admissions"))
    assert refused.value.reason is CapacityDataReason.NO_ADMISSIONS
    with pytest.raises(CapacityDataRejected) as refused:
        fit_length_of_stay(from_frame(frame.iloc[:110], "short"))
    assert refused.value.reason is CapacityDataReason.TOO_SHORT
    quiet = frame.assign(icu_admissions=0, icu_occupancy=0)
    with pytest.raises(CapacityDataRejected) as refused:
        fit_length_of_stay(from_frame(quiet, "quiet"))
    assert refused.value.reason is CapacityDataReason.NO_ADMISSIONS


def test_survival_curve_is_the_scalar_survival_on_arrays() -> None:
    t = np.array([-1.0, 0.0, 0.5, 3.0, 14.1, 60.0])
    assert ICU_STAY.survival_curve(t) == pytest.approx([ICU_STAY.survival(x) for x in t])


def test_real_italy_fit_is_the_shipped_icu_stay(shared_data: Path) -> None:
    """REAL data: the shipped ICU_STAY is the national fit, and beats the former assumption."""
    series = dpc.load(shared_data / "capacity" / "italy-dpc")
    fit = fit_length_of_stay(series)
    assert fit.stay.mean_days == pytest.approx(ICU_STAY.mean_days, abs=0.05)
    assert fit.stay.sigma == pytest.approx(ICU_STAY.sigma, abs=0.005)
    former = occupancy_rmse(series, LengthOfStay(9.0, 0.8), fittable_days(series))
    assert fit.rmse < former / 2
    assert fit.little_mean_days == pytest.approx(fit.stay.mean_days, rel=0.1)


def test_worker_settings_default_to_the_model_stays() -> None:
    worker = WorkerSettings()
    assert (worker.icu_stay_mean_days, worker.icu_stay_sigma) == (
        ICU_STAY.mean_days,
        ICU_STAY.sigma,
    )
    assert (worker.ventilation_mean_days, worker.ventilation_sigma) == (
        VENTILATION.mean_days,
        VENTILATION.sigma,
    )


def test_a_longer_stay_keeps_more_beds_taken() -> None:
    census = {
        "occupants": {f"p{i}": "2020-11-01T00:00:00+00:00" for i in range(6)},
        "ventilated": {f"p{i}": "2020-11-01T00:00:00+00:00" for i in range(4)},
        "pipeline": {},
        "clock": "2020-11-03T08:00:00+00:00",
    }
    short = forecast_from_census("h", census, 10, ventilators=6, icu_stay=LengthOfStay(5.0, 0.7))
    long = forecast_from_census("h", census, 10, ventilators=6, ventilation=LengthOfStay(30.0, 0.7))
    assert long.beds.forecast.days[-1].expected == pytest.approx(
        forecast_from_census("h", census, 10).beds.forecast.days[-1].expected
    )
    assert short.beds.forecast.days[-1].expected < long.beds.forecast.days[-1].expected
    assert short.ventilators is not None and long.ventilators is not None
    short_vents, long_vents = short.ventilators.forecast, long.ventilators.forecast
    assert short_vents.days[-1].expected < long_vents.days[-1].expected


def test_cli_fits_a_csv_and_writes_json(tmp_path: Path) -> None:
    csv = tmp_path / "unit.csv"
    simulated_frame(12.0, 0.7).to_csv(csv, index=False)
    out = tmp_path / "stay.json"
    result = CliRunner().invoke(
        app, ["capacity", "fit-stay", "--csv", str(csv), "--by-year", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "CTRIAGE_WORKER__ICU_STAY_MEAN_DAYS=" in result.output
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert [r["period"] for r in rows] == ["all", "2021", "2022"]
    assert rows[0]["mean_days"] == pytest.approx(12.0, rel=0.06)

    no_admissions = tmp_path / "occupancy_only.csv"
    simulated_frame(12.0, 0.7).drop(columns="icu_admissions").to_csv(no_admissions, index=False)
    refused = CliRunner().invoke(app, ["capacity", "fit-stay", "--csv", str(no_admissions)])
    assert refused.exit_code == 2
    assert "no_admissions" in refused.output
