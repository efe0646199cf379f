"""``ctriage train``, ``ctriage thresholds show``, ``ctriage capacity forecast``.

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

from triage.capacity import forecast_icu, occupants_from_census
from triage.exceptions import TriageError
from triage.risk import SYNTHETIC_LABEL, RiskModel, load_card, train_from_cohort

logger = logging.getLogger(__name__)

app = typer.Typer(help="Risk model: training and operating thresholds.", no_args_is_help=True)
thresholds_app = typer.Typer(help="Operating points of a trained risk model.", no_args_is_help=True)
app.add_typer(thresholds_app, name="thresholds")
capacity_app = typer.Typer(help="ICU occupancy forecasts.", no_args_is_help=True)
app.add_typer(capacity_app, name="capacity")

console = Console()


@app.command()
def train(
    cohort: Annotated[
        Path, typer.Option("--cohort", help="Cohort folder (manifest.json, outcomes.csv, ...).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Model path (.ubj); the card goes beside.")],
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and of XGBoost.")] = 0,
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
    """Train the risk model on a (synthetic) cohort and print its held-out metrics."""
    started = time.perf_counter()
    try:
        card = train_from_cohort(
            cohort,
            out,
            seed,
            target=target,
            policy_thresholds=tuple(threshold or (0.5,)),
            workers=workers,
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
) -> None:
    """Print the operating-point table of a trained model (from its card)."""
    try:
        RiskModel.load(model)  # refuses a model whose card or features do not match
        card = load_card(model)
    except TriageError as e:
        console.print(f"[red]cannot read model[/red] ({e.reason.value}): {e.detail}")
        raise typer.Exit(code=2) from e
    table = Table(
        title=f"{card['name']} {card['version']} ({card['target']}): operating points\n"
        f"[yellow]{card.get('operating_points_label', SYNTHETIC_LABEL)}[/yellow]"
    )
    for column in ("threshold", "sensitivity", "specificity", "PPV", "alerts / 100 studies"):
        table.add_column(column, justify="right")
    for point in card["operating_points"]:
        table.add_row(
            _fmt(point["threshold"]),
            _fmt(point["sensitivity"]),
            _fmt(point["specificity"]),
            _fmt(point["ppv"]),
            _fmt(point["alerts_per_100"]),
        )
    console.print(table)


@capacity_app.command("forecast")
def capacity_forecast(
    cohort: Annotated[Path, typer.Option("--cohort", help="Cohort folder with a census bundle.")],
    capacity_beds: Annotated[int, typer.Option("--capacity-beds", help="ICU beds.")] = 12,
    now: Annotated[
        str | None, typer.Option("--now", help="ISO time of the forecast (default: start_time).")
    ] = None,
    days: Annotated[int, typer.Option("--days", help="Days ahead.")] = 7,
    los_mean_days: Annotated[float, typer.Option(help="Mean ICU length of stay.")] = 9.0,
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


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
