"""Capacity forecasts: recompute time for 50 hospitals (SYNTHETIC censuses) and the backtests on
the REAL Italian DPC series (national and the 21 regions).

    CTRIAGE_TEST_PORT_OFFSET=300 .venv/bin/pytest -m bench -s tests/bench/test_bench_capacity.py
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from paths import SHARED_DATA

from streams.agents.capacity import forecast_from_census
from triage.capacity import backtest as bt
from triage.capacity import dpc
from triage.capacity.census import ICU_STAY, LengthOfStay
from triage.capacity.series import DailySeries
from triage.capacity.stay import fit_by_year, fit_length_of_stay, fittable_days, occupancy_rmse

pytestmark = pytest.mark.bench

DPC = SHARED_DATA / "capacity" / "italy-dpc"
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


@pytest.mark.skipif(not DPC.is_dir(), reason="shared real data folder absent")
def test_bench_backtest_italy(record_result) -> None:  # type: ignore[no-untyped-def]
    regions = [dpc.ITALY, *sorted(r for r in dpc.POPULATION if r != dpc.ITALY)]
    frames = []
    local_only = []
    timings: dict[str, float] = {}
    for region in regions:
        series = dpc.load(DPC, region)
        started = time.perf_counter()
        rows = bt.run_backtest(series, bt.default_models(dpc.POPULATION[region]), 14, 7)
        timings[region] = round(time.perf_counter() - started, 2)
        frames.append(pd.DataFrame(rows).assign(region=region))
        # The same forecasts with the local conformal intervals alone (before recalibration).
        ours = {"ctriage": bt.default_models(None)["ctriage"]}
        before = bt.run_backtest(series, ours, 14, 7, recalibrate=False)
        local_only.append(pd.DataFrame(before).assign(region=region))
    table = pd.concat(frames)
    national = table[table.region == dpc.ITALY]
    regional = table[table.region != dpc.ITALY]
    pooled = _pooled(regional)
    before_table = pd.concat(local_only)
    before_national = before_table[before_table.region == dpc.ITALY]
    before_pooled = _pooled(before_table[before_table.region != dpc.ITALY])
    interval_keys = ["horizon_days", "coverage80", "coverage95", "width80", "width95"]
    wins = {
        "national_h_where_ctriage_best_mae": int(
            sum(
                national[national.horizon_days == h].set_index("model").mae.idxmin() == "ctriage"
                for h in range(1, 15)
            )
        ),
        "regions_x_h_where_ctriage_best_mae": int(
            sum(
                g.set_index("model").mae.idxmin() == "ctriage"
                for _, g in regional.groupby(["region", "horizon_days"])
            )
        ),
        "regions_x_h_total": 14 * (len(regions) - 1),
    }
    record_result(
        "capacity_backtest_italy",
        {
            "data": "REAL: Italian Civil Protection (pcm-dpc/COVID-19), ICU occupancy, "
            "2020-02-24..2025-01-08, origins every 7 days",
            "runtime_s": {"national": timings[dpc.ITALY], "all_21_regions": round(
                sum(v for k, v in timings.items() if k != dpc.ITALY), 2)},
            **wins,
            "national": national.drop(columns="region").to_dict(orient="records"),
            "regions_pooled": pooled.to_dict(orient="records"),
            "ctriage_local_intervals_only": {
                "note": "same forecasts, intervals before recalibration (stage 1 of "
                "triage/capacity/conformal.py alone)",
                "national": before_national[interval_keys].to_dict(orient="records"),
                "regions_pooled": before_pooled[interval_keys].to_dict(orient="records"),
            },
        },
    )  # fmt: skip


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


def _pooled(regional: pd.DataFrame) -> pd.DataFrame:
    """Regional rows pooled per model and horizon, weighted by scored origins."""

    def weighted(g: pd.DataFrame) -> pd.Series:
        out = {
            "mae": np.average(g.mae, weights=g.w),
            "mape": np.average(g.mape.fillna(0), weights=g.w),
        }
        for key in ("coverage80", "coverage95", "width80", "width95"):
            out[key] = np.average(g[key], weights=g.w) if g[key].notna().all() else None
        return pd.Series(out)

    return (
        regional.assign(w=regional.n)
        .groupby(["model", "horizon_days"])
        .apply(weighted, include_groups=False)
        .reset_index()
    )


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
