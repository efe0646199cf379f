"""``ctriage capacity forecast|backtest|fit-stay|plot``: ICU occupancy forecasts and checks."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from triage.capacity import (
    ICU_STAY,
    DailySeries,
    SeriesSourceValues,
    default_models,
    fit_by_year,
    fit_length_of_stay,
    fittable_days,
    forecast_at,
    forecast_icu,
    load_source_series,
    occupancy_rmse,
    occupants_from_census,
    read_daily_csv,
    run_backtest,
    source_population,
)
from triage.exceptions import TriageError

app = typer.Typer(help="ICU occupancy forecasts, backtests and plots.", no_args_is_help=True)
console = Console()


@app.command("forecast")
def capacity_forecast(
    cohort: Annotated[Path, typer.Option("--cohort", help="Cohort folder with a census bundle.")],
    capacity_beds: Annotated[int, typer.Option("--capacity-beds", help="ICU beds.")] = 12,
    now: Annotated[
        str | None, typer.Option("--now", help="ISO time of the forecast (default: start_time).")
    ] = None,
    days: Annotated[int, typer.Option("--days", help="Days ahead.")] = 7,
    los_mean_days: Annotated[
        float, typer.Option(help="Mean ICU length of stay (default: fitted on REAL Italy).")
    ] = ICU_STAY.mean_days,
) -> None:
    """Forecast ICU occupancy from a cohort's census (current occupants only, no pipeline)."""
    try:
        manifest = json.loads((cohort / "manifest.json").read_text(encoding="utf-8"))
        census = json.loads((cohort / manifest["census_bundle"]).read_text(encoding="utf-8"))
        issued = datetime.fromisoformat(now or manifest["start_time"])
        forecast = forecast_icu(
            occupants_from_census(census),
            [],
            issued,
            capacity_beds,
            days=days,
            los_mean_days=los_mean_days,
            hospital=str(manifest.get("hospital", "unknown")),
        )
    except (OSError, KeyError, ValueError, TriageError) as e:
        console.print(f"[red]cannot forecast[/red]: {e}")
        raise typer.Exit(code=2) from e
    table = Table(
        title=f"ICU forecast {forecast.hospital} from {forecast.issued_at.isoformat()} "
        f"({forecast.capacity} beds; census occupants only)"
    )
    for column in ("date", "expected", "80% interval", "P(> capacity)"):
        table.add_column(column, justify="right")
    for day in forecast.days:
        table.add_row(
            day.date.isoformat(),
            f"{day.expected:.1f}",
            f"{day.lower80}-{day.upper80}",
            f"{day.p_exceed:.3f}",
        )
    console.print(table)


CsvOption = Annotated[
    Path | None, typer.Option("--csv", help="Daily series CSV (date, icu_occupancy, ...).")
]
SourceOption = Annotated[
    SeriesSourceValues | None,
    typer.Option("--source", help="Read a public series instead: dpc (Italy), divi (Germany)."),
]
DataOption = Annotated[
    Path | None, typer.Option("--data", help="Folder of the --source files (e.g. germany-divi).")
]
RegionOption = Annotated[
    str | None, typer.Option("--region", help="Region of --source (default: the nation).")
]


def daily_series(
    csv: Path | None,
    source: SeriesSourceValues | None,
    data: Path | None,
    region: str | None,
    name: str | None = None,
) -> tuple[DailySeries, int | None]:
    """The series of ``--csv`` or of ``--source``/``--data``/``--region``, and its population."""
    if csv is not None and source is None:
        return read_daily_csv(csv, name), None
    if source is None or csv is not None:
        raise ValueError("give either --csv or --source (with --data)")
    if data is None:
        raise ValueError("--source needs --data, the folder of its files")
    series = load_source_series(source, data, region)
    return replace(series, name=name or series.name), source_population(source, region)


def _number(value: object, decimals: int) -> str:
    return f"{value:.{decimals}f}" if isinstance(value, float) else "n/a"


@app.command("backtest")
def capacity_backtest_command(
    csv: CsvOption = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON here.")
    ] = None,
    population: Annotated[
        float | None,
        typer.Option(
            "--population",
            help="People in the region (CHIME runs only with it; --source knows it).",
        ),
    ] = None,
    horizon: Annotated[int, typer.Option("--horizon", help="Days ahead (1..14).")] = 14,
    step_days: Annotated[int, typer.Option("--step-days", help="Days between origins.")] = 7,
    start: Annotated[str | None, typer.Option("--start", help="First origin (ISO date).")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Last origin (ISO date).")] = None,
    source: SourceOption = None,
    data: DataOption = None,
    region: RegionOption = None,
) -> None:
    """Rolling-origin backtest of our forecast against persistence, trend and CHIME (WIS too)."""
    started = time.perf_counter()
    try:
        series, known_population = daily_series(csv, source, data, region)
        population = population or known_population
        rows = run_backtest(
            series,
            default_models(population),
            horizon=horizon,
            step_days=step_days,
            start=start,
            end=end,
        )
    except (TriageError, ValueError) as e:
        console.print(f"[red]cannot backtest[/red]: {e}")
        raise typer.Exit(code=2) from e
    table = Table(
        title=f"ICU occupancy backtest, {series.name} ({series.dates[0].date()} .. "
        f"{series.dates[-1].date()}, origins every {step_days} days); relative WIS: against "
        "persistence; w95: mean 95% width (beds)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("model", no_wrap=True)
    for column in ("h", "n", "MAE", "MAPE%", "WIS", "rel.WIS", "c50", "c80", "c95", "w95"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in sorted(rows, key=lambda r: (int(str(r["horizon_days"])), str(r["model"]))):
        table.add_row(
            str(row["model"]),
            str(row["horizon_days"]),
            str(row["n"]),
            *(_number(row[k], d) for k, d in (("mae", 2), ("mape", 1), ("wis", 2))),
            _number(row["relative_wis"], 3),
            *(_number(row[f"coverage{c}"], 2) for c in (50, 80, 95)),
            _number(row["width95"], 0),
        )
    console.print(table)
    if population is None:
        console.print("CHIME not run: pass --population to fit it.")
    console.print(f"{time.perf_counter() - started:.1f} s")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


@app.command("fit-stay")
def capacity_fit_stay(
    csv: Annotated[
        Path,
        typer.Option("--csv", help="Daily series CSV with icu_occupancy and icu_admissions."),
    ],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the fits as JSON here.")
    ] = None,
    start: Annotated[str | None, typer.Option("--start", help="First day (ISO date).")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Last day (ISO date).")] = None,
    by_year: Annotated[bool, typer.Option("--by-year", help="Also fit each year.")] = False,
) -> None:
    """Fit the lognormal ICU length of stay that best explains occupancy from admissions."""
    try:
        series = read_daily_csv(csv)
        fits = [(fit_length_of_stay(series, start=start, end=end), "all")]
    except (TriageError, ValueError) as e:
        console.print(f"[red]cannot fit a length of stay[/red]: {e}")
        raise typer.Exit(code=2) from e
    if by_year:
        fits += [(fit, fit.first_day[:4]) for fit in fit_by_year(series)]
    table = Table(title=f"ICU length of stay fitted to {series.name} (lognormal)")
    for column in ("period", "days", "mean (d)", "median (d)", "log-sd", "RMSE beds", "Little (d)"):
        table.add_column(column, justify="right")
    for fit, period in fits:
        table.add_row(
            f"{period} ({fit.first_day} .. {fit.last_day})",
            str(fit.fit_days),
            f"{fit.stay.mean_days:.1f}",
            f"{fit.median_days:.1f}",
            f"{fit.stay.sigma:.2f}",
            f"{fit.rmse:.1f}",
            f"{fit.little_mean_days:.1f}",
        )
    console.print(table)
    overall = fits[0][0]
    days = fittable_days(series)
    shipped = occupancy_rmse(series, ICU_STAY, days)
    console.print(
        f"mean occupancy {overall.mean_occupancy:.1f}; the shipped stay (mean "
        f"{ICU_STAY.mean_days:g} d, log-sd {ICU_STAY.sigma:g}) gives RMSE {shipped:.1f} beds "
        f"on all {len(days)} fittable days"
    )
    console.print(
        f"to forecast with it: CTRIAGE_WORKER__ICU_STAY_MEAN_DAYS={overall.stay.mean_days:.1f} "
        f"CTRIAGE_WORKER__ICU_STAY_SIGMA={overall.stay.sigma:.2f}"
    )
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        rows = [fit.summary(period) for fit, period in fits]
        json_out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


@app.command("plot")
def capacity_plot(
    out: Annotated[Path, typer.Option("--out", help="PNG to write.")],
    csv: CsvOption = None,
    origin: Annotated[
        str | None, typer.Option("--origin", help="Forecast from this date (default: last day).")
    ] = None,
    capacity: Annotated[
        float | None, typer.Option("--capacity", help="Capacity line (default: icu_capacity).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Hospital or region shown.")] = None,
    horizon: Annotated[int, typer.Option("--horizon", help="Days ahead.")] = 14,
    history_days: Annotated[int, typer.Option("--history-days", help="Days of history.")] = 90,
    source: SourceOption = None,
    data: DataOption = None,
    region: RegionOption = None,
) -> None:
    """Write a PNG: history, forecast fan (80/95%) and the capacity line."""
    from triage.capacity import plot_forecast

    try:
        series, _ = daily_series(csv, source, data, region, name)
        at = series.dates.size - 1
        if origin is not None:
            at = int(series.dates.searchsorted(datetime.fromisoformat(origin)))
            if not 0 <= at < series.dates.size:
                raise ValueError(f"origin {origin} outside the series")
        forecast = forecast_at(series, at, horizon)
        plot_forecast(series, forecast, out, capacity=capacity, history_days=history_days)
    except (TriageError, ValueError, OSError) as e:
        console.print(f"[red]cannot plot[/red]: {e}")
        raise typer.Exit(code=2) from e
    console.print(f"wrote {out}")
