"""``ctriage train``, ``thresholds show``, ``capacity forecast|backtest|fit-stay|plot``.

Mounted at the root of the ``ctriage`` command (``root.add_typer(triage.cli.app)``, no name).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from streams.cli import risk as risk_cli
from streams.imaging import DICOM_BIOMARKER_SOURCE, dicom_biomarkers
from triage.alerts.thresholds import OperatingPointRow, operating_point_rows
from triage.capacity import backtest as capacity_backtest
from triage.capacity import forecast_icu, occupants_from_census
from triage.capacity.census import ICU_STAY
from triage.capacity.series import DailySeries, read_daily_csv
from triage.capacity.stay import (
    fit_by_year,
    fit_length_of_stay,
    fittable_days,
    occupancy_rmse,
)
from triage.exceptions import TriageError
from triage.risk.model import SYNTHETIC_LABEL, RiskModel, load_card
from triage.risk.synthetic import train_from_cohort

logger = logging.getLogger(__name__)

app = typer.Typer(help="Risk model: training and operating thresholds.", no_args_is_help=True)
thresholds_app = typer.Typer(help="Operating points of a trained risk model.", no_args_is_help=True)
app.add_typer(thresholds_app, name="thresholds")
capacity_app = typer.Typer(
    help="ICU occupancy forecasts, backtests and plots.", no_args_is_help=True
)
app.add_typer(capacity_app, name="capacity")
app.add_typer(risk_cli.app, name="risk")

console = Console()


@app.command()
def train(
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="--cohort: model path (.ubj), card beside; --mexico: models folder."
        ),
    ],
    cohort: Annotated[
        Path | None,
        typer.Option("--cohort", help="SYNTHETIC cohort folder (manifest.json, outcomes.csv)."),
    ] = None,
    mexico: Annotated[
        Path | None,
        typer.Option("--mexico", help="REAL Mexico case-file folder: trains every outcome."),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Seed of the split and XGBoost (default 0; --mexico 2020)."),
    ] = None,
    target: Annotated[
        str, typer.Option("--target", help="Outcome column: ventilation_14d or icu_admission.")
    ] = "ventilation_14d",
    threshold: Annotated[
        list[float] | None,
        typer.Option("--threshold", help="Policy threshold(s) to report (repeatable)."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="Processes quantifying the DICOM studies.")
    ] = 1,
) -> None:
    """Train risk models (--mexico: the shipped ones; --cohort: SYNTHETIC) and print metrics."""
    if mexico is not None and cohort is None:
        risk_cli.train_real(mexico, out, risk_cli.DEFAULT_SEED if seed is None else seed, console)
        return
    if cohort is None or mexico is not None:
        console.print("[red]training failed[/red]: give exactly one of --cohort and --mexico")
        raise typer.Exit(code=2)
    started = time.perf_counter()
    try:
        card = train_from_cohort(
            cohort,
            out,
            0 if seed is None else seed,
            target=target,
            policy_thresholds=tuple(threshold or (0.5,)),
            workers=workers,
            biomarker_fn=dicom_biomarkers,
            biomarker_source=DICOM_BIOMARKER_SOURCE,
        )
    except TriageError as e:
        console.print(f"[red]training failed[/red] ({e.reason.value}): {e.detail}")
        raise typer.Exit(code=2) from e
    except ValueError as e:  # e.g. a model path that does not end in .ubj
        console.print(f"[red]training failed[/red]: {e}")
        raise typer.Exit(code=2) from e
    metrics = card["metrics"]
    data = card["training_data"]
    console.print(f"[bold]model[/bold] {out} version {card['version']} (target {card['target']})")
    console.print(
        f"trained on {data['n_studies']} studies ({data['n_positive']} positive) "
        f"in {time.perf_counter() - started:.1f} s; {metrics['split']}"
    )
    table = Table(title=f"[yellow]{SYNTHETIC_LABEL}[/yellow]")
    table.add_column("metric")
    table.add_column("held-out value", justify="right")
    for name in ("auc", "brier", "calibration_error"):
        table.add_row(name, _fmt(metrics[name]))
    for point in metrics["at_policy_thresholds"]:
        t = point["threshold"]
        table.add_row(f"sensitivity @ {t}", _fmt(point["sensitivity"]))
        table.add_row(f"specificity @ {t}", _fmt(point["specificity"]))
        table.add_row(f"alerts / 100 @ {t}", _fmt(point["alerts_per_100"]))
    console.print(table)


@thresholds_app.command("show")
def show(
    model: Annotated[Path, typer.Option("--model", help="Model path (.ubj) with its card.")],
    studies_per_day: Annotated[
        float | None,
        typer.Option("--studies-per-day", help="Study volume for the expected alerts per day."),
    ] = None,
) -> None:
    """Print the operating-point table of a trained model (from its card).

    ``ctriage thresholds show`` (the root command) adds the levels in force and the volume
    measured in the store; this one reads the card only.
    """
    try:
        RiskModel.load(model)  # refuses a model whose card or features do not match
        card = load_card(model)
    except TriageError as e:
        console.print(f"[red]cannot read model[/red] ({e.reason.value}): {e.detail}")
        raise typer.Exit(code=2) from e
    volume = "given" if studies_per_day is not None else "unknown: pass --studies-per-day"
    console.print(operating_points_table(card, operating_point_rows(card, studies_per_day), volume))


def operating_points_table(
    card: dict[str, Any], rows: list[OperatingPointRow], volume_note: str
) -> Table:
    """The operating-point table of a model card (rows from :func:`operating_point_rows`)."""
    per_day = rows[0].alerts_per_day is not None if rows else False
    table = Table(
        title=f"{card['name']} {card['version']} ({card['target']}): operating points\n"
        f"[yellow]{card.get('operating_points_label', SYNTHETIC_LABEL)}[/yellow]",
        caption=f"studies per day: {volume_note}",
    )
    columns = ["threshold", "sensitivity", "specificity", "PPV", "alerts / 100 studies"]
    columns += ["alerts / day"] if per_day else []
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("level in force")
    for row in rows:
        cells = [row.threshold, row.sensitivity, row.specificity, row.ppv, row.alerts_per_100]
        cells += [row.alerts_per_day] if per_day else []
        table.add_row(*(_fmt(c) for c in cells), ", ".join(row.levels))
    return table


@capacity_app.command("forecast")
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


@capacity_app.command("backtest")
def capacity_backtest_command(
    csv: Annotated[
        Path, typer.Option("--csv", help="Daily series CSV (date, icu_occupancy, ...).")
    ],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON here.")
    ] = None,
    population: Annotated[
        float | None,
        typer.Option("--population", help="People in the region (CHIME runs only with it)."),
    ] = None,
    horizon: Annotated[int, typer.Option("--horizon", help="Days ahead (1..14).")] = 14,
    step_days: Annotated[int, typer.Option("--step-days", help="Days between origins.")] = 7,
    start: Annotated[str | None, typer.Option("--start", help="First origin (ISO date).")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Last origin (ISO date).")] = None,
) -> None:
    """Rolling-origin backtest of our forecast against persistence, trend and CHIME."""
    started = time.perf_counter()
    try:
        series = read_daily_csv(csv)
        rows = capacity_backtest.run_backtest(
            series,
            capacity_backtest.default_models(population),
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
        f"{series.dates[-1].date()}, origins every {step_days} days)"
    )
    for column in ("model", "h (days)", "n", "MAE", "MAPE %", "cover 80%", "cover 95%"):
        table.add_column(column, justify="right")
    for row in sorted(rows, key=lambda r: (int(str(r["horizon_days"])), str(r["model"]))):
        table.add_row(
            str(row["model"]),
            str(row["horizon_days"]),
            str(row["n"]),
            _fmt(row["mae"]),
            _fmt(row["mape"]),
            _fmt(row["coverage80"]),
            _fmt(row["coverage95"]),
        )
    console.print(table)
    if population is None:
        console.print("CHIME not run: pass --population to fit it.")
    console.print(f"{time.perf_counter() - started:.1f} s")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


@capacity_app.command("fit-stay")
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


@capacity_app.command("plot")
def capacity_plot(
    csv: Annotated[
        Path, typer.Option("--csv", help="Daily series CSV (date, icu_occupancy, ...).")
    ],
    out: Annotated[Path, typer.Option("--out", help="PNG to write.")],
    origin: Annotated[
        str | None, typer.Option("--origin", help="Forecast from this date (default: last day).")
    ] = None,
    capacity: Annotated[
        float | None, typer.Option("--capacity", help="Capacity line (default: icu_capacity).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Hospital or region shown.")] = None,
    horizon: Annotated[int, typer.Option("--horizon", help="Days ahead.")] = 14,
    history_days: Annotated[int, typer.Option("--history-days", help="Days of history.")] = 90,
) -> None:
    """Write a PNG: history, forecast fan (80/95%) and the capacity line."""
    from triage.capacity.plot import plot_forecast

    try:
        series: DailySeries = read_daily_csv(csv, name)
        at = series.dates.size - 1
        if origin is not None:
            at = int(series.dates.searchsorted(datetime.fromisoformat(origin)))
            if not 0 <= at < series.dates.size:
                raise ValueError(f"origin {origin} outside the series")
        forecast = capacity_backtest.forecast_at(series, at, horizon)
        plot_forecast(series, forecast, out, capacity=capacity, history_days=history_days)
    except (TriageError, ValueError, OSError) as e:
        console.print(f"[red]cannot plot[/red]: {e}")
        raise typer.Exit(code=2) from e
    console.print(f"wrote {out}")


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
