"""Capacity forecasts: recompute time for 50 hospitals (SYNTHETIC censuses), the backtests on
REAL data (Italy: DPC national + 21 regions; Germany: DIVI register national + 16 states), the
live per-unit model on the smallest regions of each, and the length of stay fitted on Italy.

    nice -n 10 .venv/bin/pytest -m bench -s tests/bench/test_bench_capacity.py

Results: capacity_backtest_italy.json, capacity_backtest_germany.json, capacity_unit_backtest.json
(docs/capacity-backtests.md reads them), capacity_recompute_50_hospitals.json,
capacity_stay_italy.json.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from paths import SHARED_DATA

from triage.capacity import backtest as bt
from triage.capacity import divi, dpc
from triage.capacity.census import ICU_STAY, LengthOfStay
from triage.capacity.series import DailySeries
from triage.capacity.stay import fit_by_year, fit_length_of_stay, fittable_days, occupancy_rmse
from triage.capacity.unit_backtest import run_unit_backtest
from triage.capacity.unit_forecast import forecast_from_census

pytestmark = pytest.mark.bench

DPC = SHARED_DATA / "capacity" / "italy-dpc"
DIVI = SHARED_DATA / "capacity" / "germany-divi"
#: The smallest regions by population (chosen before any run of the unit model): units' stand-ins.
SMALLEST = {
    "italy": ["Valle d'Aosta", "Molise", "P.A. Bolzano", "P.A. Trento"],
    "germany": ["Bremen", "Saarland", "Mecklenburg-Vorpommern", "Hamburg"],
}
NOW = datetime(2024, 1, 15, 8, tzinfo=UTC)


def synthetic_census(rng: np.random.Generator) -> dict[str, object]:
    """SYNTHETIC: ~20 occupants, ~10 scored patients, two weeks of admissions."""
    occupants = {
        f"o{i}": (NOW - timedelta(days=float(rng.uniform(0, 20)))).isoformat()
        for i in range(int(rng.integers(10, 30)))
    }
    pipeline = {
        f"p{i}": [float(rng.uniform(0, 0.8)),
                  (NOW - timedelta(hours=float(rng.uniform(0, 72)))).isoformat()]
        for i in range(int(rng.integers(0, 20)))
    }  # fmt: skip
    admissions = {
        (NOW - timedelta(days=k)).date().isoformat(): int(rng.poisson(3)) for k in range(1, 29)
    }
    ventilated = {p: at for p, at in occupants.items() if rng.uniform() < 0.6}
    starts = {
        (NOW - timedelta(days=k)).date().isoformat(): int(rng.poisson(2)) for k in range(1, 29)
    }
    at_risk = {**pipeline, **{p: [float(rng.uniform(0, 0.5)), at] for p, at in occupants.items()
                              if p not in ventilated}}  # fmt: skip
    return {"occupants": occupants, "pipeline": pipeline, "admissions": admissions,
            "ventilated": ventilated, "at_risk": at_risk, "ventilation_starts": starts,
            "clock": NOW.isoformat()}  # fmt: skip


def test_bench_recompute_50_hospitals(record_result) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    censuses = [synthetic_census(rng) for _ in range(50)]
    numbers: dict[str, object] = {
        "data": "SYNTHETIC censuses: 10-30 ICU occupants (~60% ventilated), 0-20 scored "
        "patients, 4 weeks of admissions and ventilation starts; 2,000 breach paths each",
        "hospitals": 50,
    }
    for days in (7, 14):
        for label, ventilators in (("icu_only", None), ("icu_and_ventilators", 16)):
            forecast_from_census("warm-up", censuses[0], 24, days=days, ventilators=ventilators)
            runs = []
            for _ in range(3):
                started = time.perf_counter()
                for i, census in enumerate(censuses):
                    forecast_from_census(f"h{i}", census, 24, days=days, ventilators=ventilators)
                runs.append(time.perf_counter() - started)
            numbers[f"all_50_hospitals_{label}_{days}d_s_median_of_3"] = round(sorted(runs)[1], 3)
    record_result("capacity_recompute_50_hospitals", numbers)


def italy_series() -> dict[str, DailySeries]:
    """REAL: the nation first, then the 21 regions (alphabetical)."""
    regions = [dpc.ITALY, *sorted(r for r in dpc.POPULATION if r != dpc.ITALY)]
    return {region: dpc.load(DPC, region) for region in regions}


def germany_series() -> dict[str, DailySeries]:
    """REAL: the nation first, then the 16 states (alphabetical)."""
    return {divi.GERMANY: divi.load(DIVI), **dict(sorted(divi.load_states(DIVI).items()))}


def _records(table: pd.DataFrame) -> list[dict[str, object]]:
    """Rows for the JSON, numbers rounded to 4 decimals."""
    return [
        {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
        for row in table.to_dict(orient="records")
    ]


def _at_7_days(seven: pd.DataFrame, value: str) -> dict[str, dict[str, float]]:
    """``{series: {model: value}}`` at 7 days."""
    wide = seven.pivot(index="series", columns="model", values=value).round(3)
    return {str(k): v for k, v in wide.to_dict(orient="index").items()}


def country_summary(table: pd.DataFrame, nation: str) -> dict[str, object]:
    """The figures of issue 14's "done when", per country, from every backtest row."""
    seven = table[table.horizon_days == 7]
    ours = seven[seven.model == "ctriage"].set_index("series")
    regional = ours.drop(index=nation)
    relative = seven.pivot(index="series", columns="model", values="relative_wis")
    coverages = ["coverage50", "coverage80", "coverage95"]
    return {
        "national_relative_wis_7d": relative.loc[nation].round(3).to_dict(),
        "regions": int(regional.shape[0]),
        "regions_relative_wis_7d_below_1": int((regional.relative_wis < 1).sum()),
        "share_regions_relative_wis_7d_below_1": float((regional.relative_wis < 1).mean()),
        "regions_relative_wis_7d_below_1_by_model": {
            str(m): int(v) for m, v in (relative.drop(index=nation) < 1).sum().items()
        },
        "relative_wis_7d_by_series": ours.relative_wis.round(3).to_dict(),
        "mean_coverage95_all_series_horizons": float(
            table[table.model == "ctriage"].coverage95.mean()
        ),
        "mean_coverage95_7d": float(ours.coverage95.mean()),
        "mean_coverage_by_model": table.groupby("model")[coverages]
        .mean()
        .round(3)
        .to_dict(orient="index"),
        "max_width95_over_bound": float(table.max_width95_over_bound.max()),
        "max_width95_beds": float(table.max_width95.max()),
        "ctriage_capped95_share": float(table[table.model == "ctriage"].capped95_share.mean()),
        "ctriage_blend_persistence_alone_share_7d": float(ours.other_model_share.mean()),
        "ctriage_select_switched_share_7d": float(
            seven[seven.model == bt.SELECT].other_model_share.mean()
        ),
        "mae_7d_by_series": ours.mae.round(3).to_dict(),
    }


def run_country(
    record_result: Callable[[str, dict[str, object]], object],
    name: str,
    series: dict[str, DailySeries],
    population: dict[str, int],
    data: str,
) -> None:
    """Backtest every series of a country (nation first) and record the rows and the summary."""
    frames, timings = [], {}
    for region, daily in series.items():
        started = time.perf_counter()
        rows = bt.run_backtest(daily, bt.default_models(population[region]), 14, 7)
        timings[region] = round(time.perf_counter() - started, 2)
        frames.append(pd.DataFrame(rows).assign(series=region))
    table = pd.concat(frames, ignore_index=True)
    nation = next(iter(series))
    summary = country_summary(table, nation)
    print(pd.Series(summary["relative_wis_7d_by_series"]).to_string())
    regional_s = round(sum(v for k, v in timings.items() if k != nation), 2)
    record_result(
        f"capacity_backtest_{name}",
        {
            "data": data,
            "origins": "every 7 days from day 28 + 90 + 14 of each series; horizons 1-14 days",
            "runtime_s": {"national": timings[nation], "all_regions": regional_s},
            "summary": summary,
            "national": _records(table[table.series == nation]),
            "rows_1_7_14_days": _records(table[table.horizon_days.isin([1, 7, 14])]),
        },
    )


@pytest.mark.skipif(not DPC.is_dir(), reason="shared real data folder absent")
def test_bench_backtest_italy(record_result) -> None:  # type: ignore[no-untyped-def]
    data = (
        "REAL: Italian Civil Protection (pcm-dpc/COVID-19), ICU occupancy "
        "(terapia_intensiva), 2020-02-24..2025-01-08"
    )
    run_country(record_result, "italy", italy_series(), dpc.POPULATION, data)


@pytest.mark.skipif(not DIVI.is_dir(), reason="shared real data folder absent")
def test_bench_backtest_germany(record_result) -> None:  # type: ignore[no-untyped-def]
    data = (
        "REAL: DIVI-Intensivregister (RKI, CC BY 4.0), adults' COVID-19 ICU census "
        "(faelle_covid_aktuell), 2020-03-20..2026-08-22; every setting chosen on Italy only"
    )
    run_country(record_result, "germany", germany_series(), divi.POPULATION, data)


@pytest.mark.skipif(not (DPC.is_dir() and DIVI.is_dir()), reason="shared real data folder absent")
def test_bench_unit_model(record_result) -> None:  # type: ignore[no-untyped-def]
    """REAL: the live per-unit model against the series model and persistence, small regions."""
    states = divi.load_states(DIVI)
    loaded = {
        **{r: dpc.load(DPC, r) for r in SMALLEST["italy"]},
        **{s: states[s] for s in SMALLEST["germany"]},
    }
    frames = []
    started = time.perf_counter()
    for region, daily in loaded.items():
        frames.append(pd.DataFrame(run_unit_backtest(daily, 14, 7)).assign(series=region))
    table = pd.concat(frames, ignore_index=True)
    seven = table[table.horizon_days == 7]
    print(seven.pivot(index="series", columns="model", values="relative_wis").round(3))
    record_result(
        "capacity_unit_backtest",
        {
            "data": "REAL: the 4 smallest Italian regions and German states by population; "
            "origins every 7 days with 90 days of known admissions before them",
            "runtime_s": round(time.perf_counter() - started, 2),
            "relative_wis_7d": _at_7_days(seven, "relative_wis"),
            "coverage95_7d": _at_7_days(seven, "coverage95"),
            "mae_7d": _at_7_days(seven, "mae"),
            "rows_1_7_14_days": _records(table[table.horizon_days.isin([1, 7, 14])]),
        },
    )


def _rolling_refit(
    series: DailySeries, former: LengthOfStay, window_days: int
) -> dict[str, object]:
    """Each quarter from 2021-07: fit on the previous ``window_days``, score the quarter."""
    days = fittable_days(series)
    squared: dict[str, float] = {"refit": 0.0, "former": 0.0}
    scored_days = 0
    quarters = pd.date_range("2021-07-01", series.dates[-1], freq="QS")
    for quarter in quarters:
        fit = fit_length_of_stay(
            series,
            start=str((quarter - pd.Timedelta(days=window_days)).date()),
            end=str((quarter - pd.Timedelta(days=1)).date()),
        )
        when = series.dates[days]
        scored = days[(when >= quarter) & (when < quarter + pd.offsets.QuarterBegin(1))]
        scored_days += len(scored)
        squared["refit"] += occupancy_rmse(series, fit.stay, scored) ** 2 * len(scored)
        squared["former"] += occupancy_rmse(series, former, scored) ** 2 * len(scored)
    return {
        "window_days": window_days,
        "quarters": len(quarters),
        "scored_days": scored_days,
        "rmse_beds": round(float(np.sqrt(squared["refit"] / scored_days)), 2),
        "rmse_former_assumption": round(float(np.sqrt(squared["former"] / scored_days)), 2),
    }


def test_bench_length_of_stay_italy(record_result) -> None:  # type: ignore[no-untyped-def]
    """REAL: the lognormal ICU stay fitted nationally, per year and per region."""
    former = LengthOfStay(9.0, 0.8)  # the assumption before the fit (sessions 1-4)
    rows = []
    started = time.perf_counter()
    for region in [dpc.ITALY, *sorted(r for r in dpc.POPULATION if r != dpc.ITALY)]:
        series = dpc.load(DPC, region)
        former_rmse = occupancy_rmse(series, former, fittable_days(series))
        rows.append(
            {
                **fit_length_of_stay(series).summary("all"),
                "rmse_former_assumption": round(former_rmse, 2),
            }
        )
        if region == dpc.ITALY:
            rows += [fit.summary(fit.first_day[:4]) for fit in fit_by_year(series)]
    elapsed = time.perf_counter() - started
    # out of sample: fitted on 2021 only, scored on 2022 onwards against the former assumption
    national = dpc.load(DPC)
    early = fit_length_of_stay(national, end="2021-12-31")
    later = fittable_days(national)
    later = later[national.dates[later] >= "2022-01-01"]
    holdout = {
        "fitted_on": f"{early.first_day}..{early.last_day}",
        "scored_on": f"{national.dates[later[0]].date()}..{national.dates[later[-1]].date()}",
        "mean_days": round(early.stay.mean_days, 2),
        "sigma": round(early.stay.sigma, 3),
        "rmse_beds": round(occupancy_rmse(national, early.stay, later), 2),
        "rmse_former_assumption": round(occupancy_rmse(national, former, later), 2),
        "rmse_shipped_all_years_fit": round(occupancy_rmse(national, ICU_STAY, later), 2),
    }
    holdout["rolling_refit"] = _rolling_refit(national, former, window_days=180)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    regional = table[(table.series != dpc.ITALY)]
    record_result(
        "capacity_stay_italy",
        {
            "data": "REAL: Italian Civil Protection (pcm-dpc/COVID-19), ICU occupancy and "
            "daily ICU admissions (from 2020-12-03; fitted from 2021-03-02, 90 days of history)",
            "former_assumption": {"mean_days": former.mean_days, "sigma": former.sigma},
            "runtime_s_all_22_series": round(elapsed, 3),
            "regional_mean_days_range": [
                float(regional.mean_days.min()),
                float(regional.mean_days.max()),
            ],
            "regions_where_fit_beats_former": int(
                (regional.rmse_beds < regional.rmse_former_assumption).sum()
            ),
            "national_out_of_sample": holdout,
            "fits": rows,
        },
    )


def test_bench_forecast_by_census_size(record_result) -> None:  # type: ignore[no-untyped-def]
    """One unit's forecast (beds + ventilators, 7 days) as its scored patients grow: the
    capacity agent forecasts once per census event, so this is its cost per scored study."""
    rng = np.random.default_rng(1)
    numbers: dict[str, object] = {
        "data": "SYNTHETIC census: 20 ICU occupants, N scored patients in the last 3 days "
        "(P(ICU) 0-0.8), 4 weeks of admissions; 2,000 breach paths",
    }
    base = synthetic_census(rng)
    for n in (10, 100, 1000, 3000):
        pipeline = {
            f"p{i}": [float(rng.uniform(0, 0.8)),
                      (NOW - timedelta(hours=float(rng.uniform(0, 72)))).isoformat()]
            for i in range(n)
        }  # fmt: skip
        census = {**base, "pipeline": pipeline, "at_risk": pipeline}
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            forecast_from_census("h", census, 24, days=7, ventilators=16)
            runs.append(time.perf_counter() - started)
        numbers[f"scored_{n}_ms_median_of_3"] = round(1000 * sorted(runs)[1], 1)
    record_result("capacity_forecast_by_census_size", numbers)
