"""Daily series, the rolling-origin backtest, its CLI and the plot.

The small backtest on the real Italian series (DPC) runs here; the full national and regional
backtests are in tests/bench/test_bench_capacity.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from paths import SHARED_DATA
from typer.testing import CliRunner

from streams.cli.root import app
from triage.capacity import backtest as bt
from triage.capacity import dpc, wis
from triage.capacity.exceptions import CapacityDataReason, CapacityDataRejected
from triage.capacity.series import flow_forecast, from_frame, leaving_hazard, read_daily_csv

pytestmark = pytest.mark.unit

DPC = SHARED_DATA / "capacity" / "italy-dpc"
DIVI = SHARED_DATA / "capacity" / "germany-divi"
KEYS = {
    "model", "horizon_days", "mae", "mape", "wis", "wis_dispersion", "wis_underprediction",
    "wis_overprediction", "relative_wis", "coverage50", "coverage80", "coverage95", "width95",
    "max_width95_over_bound", "capped95_share", "other_model_share",
}  # fmt: skip


def synthetic_wave(days: int = 260, seed: int = 3) -> pd.DataFrame:
    """SYNTHETIC: an epidemic wave of ICU admissions, 10-day mean stay, Poisson noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    rate = 5 + 40 * np.exp(-(((t - 150) / 30.0) ** 2))
    admissions = rng.poisson(rate)
    occupancy = np.zeros(days)
    for i in range(1, days):
        occupancy[i] = rng.binomial(int(occupancy[i - 1]), 0.9) + admissions[i]
    return pd.DataFrame(
        {
            "date": pd.date_range("2021-01-01", periods=days).strftime("%Y-%m-%d"),
            "icu_occupancy": occupancy,
            "icu_admissions": admissions,
        }
    )


def test_gaps_are_added_interpolated_for_models_and_not_scored() -> None:
    frame = synthetic_wave().drop(index=[200, 201, 202]).drop(columns=["icu_admissions"])
    series = from_frame(frame, "synthetic")
    assert series.dates.size == 260
    assert np.isnan(series.occupancy[200:203]).all()
    assert not np.isnan(series.model_occupancy).any()
    assert np.isnan(series.admissions).all()  # column missing: unknown, not zero
    rows = bt.run_backtest(series, {"persistence": bt.persistence}, horizon=1, step_days=1)
    origins = np.arange(bt.WARMUP_DAYS + bt.FIRST_SCORED_AFTER_DAYS + 1, 259)
    assert rows[0]["n"] == origins.size - 3  # the three origins whose next day is a gap


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (pd.DataFrame({"date": ["2021-01-01"], "icu": [1]}), CapacityDataReason.MISSING_COLUMN),
        (pd.DataFrame({"date": ["01/02/2021"], "icu_occupancy": [1]}), CapacityDataReason.BAD_DATE),
        (pd.DataFrame({"date": ["2021-01-01"] * 2, "icu_occupancy": [1, 2]}),
         CapacityDataReason.DUPLICATE_DATE),
        (pd.DataFrame({"date": ["2021-01-01"], "icu_occupancy": [3]}),
         CapacityDataReason.TOO_SHORT),
    ],
)  # fmt: skip
def test_bad_series_get_a_reason(frame: pd.DataFrame, reason: CapacityDataReason) -> None:
    with pytest.raises(CapacityDataRejected) as info:
        from_frame(frame, "bad")
    assert info.value.reason is reason


def test_leaving_hazard_recovers_the_simulated_one() -> None:
    series = from_frame(synthetic_wave(), "synthetic")
    delta = leaving_hazard(series.occupancy[:200], series.admissions[:200], 0.5)
    assert delta == pytest.approx(0.1, abs=0.02)


def test_flow_forecast_of_a_steady_state_stays_steady() -> None:
    occ = np.full(40, 100.0)
    adm = np.full(40, 10.0)
    assert flow_forecast(occ, adm, 14) == pytest.approx(np.full(14, 100.0), rel=1e-6)


def test_synthetic_backtest_intervals_and_no_look_ahead() -> None:
    """SYNTHETIC series: our model beats persistence after day 3 and covers near nominal."""
    series = from_frame(synthetic_wave(), "synthetic")
    rows = bt.run_backtest(series, bt.default_models(None), horizon=7, step_days=1)
    by: dict[tuple[object, object], dict[str, Any]] = {
        (r["model"], r["horizon_days"]): r for r in rows
    }
    assert {m for m, _ in by} == {
        "ctriage",
        "ctriage_flow",
        "persistence",
        "seasonal_naive",
        "linear_trend",
        "ctriage_select",
    }
    assert by[("ctriage", 7)]["mae"] < by[("persistence", 7)]["mae"]
    assert by[("ctriage", 7)]["relative_wis"] < 1.0 == by[("persistence", 7)]["relative_wis"]
    assert 0.6 <= by[("ctriage", 7)]["coverage80"] <= 0.95
    assert 0.0 <= by[("ctriage_select", 7)]["other_model_share"] <= 1.0
    # Changing the future must not change a forecast made before it.
    early = bt.point_forecasts(series, bt.ctriage_flow, [150], 7)
    altered = synthetic_wave()
    altered.loc[151:, "icu_occupancy"] = 0
    again = bt.point_forecasts(from_frame(altered, "x"), bt.ctriage_flow, [150], 7)
    assert early == pytest.approx(again)
    # nor a blend weight: the blend learns only from outcomes known at its origin
    ours = bt.default_models(None)["ctriage"]
    blended = bt.every_forecast(series, ours, range(100, 151), 7)
    blended_again = bt.every_forecast(from_frame(altered, "x"), ours, range(100, 151), 7)
    assert blended == pytest.approx(blended_again)


def test_blend_picks_the_model_that_was_right_before_the_origin() -> None:
    """Two constant forecasters, the truth equal to the second: the blend moves to it."""
    y = np.full(200, 10.0)
    first = np.full((150, 3), 20.0)
    second = np.full((150, 3), 10.0)
    out = bt.blend_forecasts(y, first, second, first_origin=30)
    assert out[:10] == pytest.approx(20.0)  # no known errors yet: the first model alone
    assert out[-1] == pytest.approx(10.0)


def test_quantiles_of_the_blend_use_no_outcome_after_their_origin() -> None:
    """Changing the series after day 300 leaves every forecast made up to day 300 as it was."""
    frame = synthetic_wave(days=420)
    series = from_frame(frame, "synthetic")
    altered = frame.copy()
    altered.loc[301:, "icu_occupancy"] = altered.loc[301:, "icu_occupancy"] * 3 + 50
    changed = from_frame(altered, "x")
    ours = bt.default_models(None)["ctriage"]
    origins = range(bt.WARMUP_DAYS, 410)
    q = bt.quantile_forecasts(series, bt.every_forecast(series, ours, origins, 7), origins.start)
    again = bt.quantile_forecasts(
        changed, bt.every_forecast(changed, ours, origins, 7), origins.start
    )
    past = np.arange(200, 301) - origins.start
    assert not np.isnan(q[past]).any()
    assert q[past] == pytest.approx(again[past])
    later = np.arange(330, 400) - origins.start
    assert not np.allclose(q[later], again[later])  # not vacuous: later quantiles do move


@pytest.mark.skipif(not DPC.is_dir(), reason="shared real data folder absent")
def test_real_italy_second_wave_beats_every_baseline() -> None:
    """REAL data (DPC national ICU occupancy), origins weekly over the 2020-21 winter."""
    series = dpc.load(DPC)
    rows = bt.run_backtest(
        series, bt.default_models(dpc.POPULATION[dpc.ITALY]), 14, 7, "2020-10-01", "2021-04-30"
    )
    mae: dict[tuple[object, object], Any] = {
        (r["model"], r["horizon_days"]): r["mae"] for r in rows
    }
    for h in (1, 7, 14):
        ours = mae[("ctriage", h)]
        assert all(ours < mae[(m, h)] for m in ("persistence", "linear_trend", "chime")), h
    seven: dict[object, dict[str, Any]] = {r["model"]: r for r in rows if r["horizon_days"] == 7}
    assert seven["ctriage"]["relative_wis"] < 0.8
    assert all(r["max_width95_over_bound"] <= 1.0 for r in seven.values())


def test_cli_backtest_writes_json(tmp_path: Path) -> None:
    csv = tmp_path / "synthetic.csv"
    synthetic_wave().to_csv(csv, index=False)
    out = tmp_path / "result.json"
    result = CliRunner().invoke(
        app,
        ["capacity", "backtest", "--csv", str(csv), "--json", str(out), "--horizon", "3",
         "--population", "1000000"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert len(rows) == 7 * 3 and all(set(r) >= KEYS for r in rows)
    assert {r["model"] for r in rows} >= {"chime", "ctriage", "ctriage_select"}
    assert all(r["wis"] is not None for r in rows)  # CHIME too: intervals by the same rule
    bad = CliRunner().invoke(app, ["capacity", "backtest", "--csv", str(tmp_path / "no.csv")])
    assert bad.exit_code == 2 and "unreadable" in bad.output
    both = CliRunner().invoke(
        app, ["capacity", "backtest", "--csv", str(csv), "--source", "dpc", "--data", "x"]
    )
    assert both.exit_code == 2 and "either --csv or --source" in both.output


@pytest.mark.skipif(not DIVI.is_dir(), reason="shared real data folder absent")
def test_cli_backtest_reads_the_german_register(tmp_path: Path) -> None:
    """REAL data (DIVI, Bremen) through --source: population known, WIS printed, JSON written."""
    out = tmp_path / "bremen.json"
    args = ["capacity", "backtest", "--source", "divi", "--data", str(DIVI), "--region",
            "Bremen", "--horizon", "2", "--end", "2021-01-31", "--json", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "rel.WIS" in result.output and "CHIME not run" not in result.output
    rows = json.loads(out.read_text())
    assert {r["model"] for r in rows} >= {"chime", "ctriage"}
    unknown = CliRunner().invoke(app, [*args[:6], "--region", "Atlantis"])
    assert unknown.exit_code == 2 and "unknown_region" in unknown.output


def test_cli_plot_writes_a_png(tmp_path: Path) -> None:
    csv = tmp_path / "synthetic.csv"
    synthetic_wave().to_csv(csv, index=False)
    png = tmp_path / "fan.png"
    result = CliRunner().invoke(
        app,
        ["capacity", "plot", "--csv", str(csv), "--out", str(png), "--origin", "2021-05-01",
         "--capacity", "300"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fc = bt.forecast_at(read_daily_csv(csv), 160, 14)
    assert fc.bands.shape == (14, len(wis.LEVELS))
    assert np.all(np.diff(fc.bands, axis=1) >= 0)  # quantiles never cross
