"""``ctriage risk score`` and ``ctriage train``: the risk models, scored and trained.

``app`` is the ``risk`` group; :func:`train` is mounted at the root as ``ctriage train``
(``--mexico``: the shipped models on REAL data; ``--cohort``: a SYNTHETIC model).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from streams.cli.common import fmt
from streams.imaging import DICOM_BIOMARKER_SOURCE, dicom_biomarkers
from triage.exceptions import TriageError
from triage.risk import semisynthetic
from triage.risk.card import REAL_LABEL
from triage.risk.model import SYNTHETIC_LABEL
from triage.risk.scoring import MODELS_DIR, RiskPanel, score_csv
from triage.risk.synthetic import train_from_cohort
from triage.risk.training import train_mexico

DEFAULT_SEED = 2020

app = typer.Typer(help="Score patients with the risk models.", no_args_is_help=True)
console = Console()


@app.command("score")
def score(
    csv_in: Annotated[Path, typer.Option("--csv", help="Patients, one per row (see README).")],
    out: Annotated[Path, typer.Option("--out", help="CSV to write: input + risks.")],
    models: Annotated[
        Path, typer.Option("--models", help="Folder with <outcome>[_clinical].ubj + cards.")
    ] = MODELS_DIR,
) -> None:
    """Score every row with the ventilation, ICU and death models; bad rows get an error."""
    started = time.perf_counter()
    try:
        panel = RiskPanel.load(models)
        report = score_csv(csv_in, out, panel)
    except TriageError as e:
        console.print(f"[red]cannot load models[/red] ({e.reason.value}): {e.detail}")
        raise typer.Exit(code=2) from e
    except (OSError, ValueError, UnicodeDecodeError) as e:
        console.print(f"[red]cannot score[/red]: {e}")
        raise typer.Exit(code=2) from e
    elapsed = time.perf_counter() - started
    console.print(
        f"scored {report.scored} of {report.rows} rows, rejected {report.rejected} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(report.rejections.items())) or 'none'}) "
        f"in {elapsed:.2f} s -> {out}"
    )
    versions = ", ".join(f"{n} {m.version}" for n, m in panel.fused.items())
    console.print(f"models: {versions} (fused; rows without imaging: the clinical-only models)")


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
        train_real(mexico, out, DEFAULT_SEED if seed is None else seed, console)
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
        table.add_row(name, fmt(metrics[name]))
    for point in metrics["at_policy_thresholds"]:
        t = point["threshold"]
        table.add_row(f"sensitivity @ {t}", fmt(point["sensitivity"]))
        table.add_row(f"specificity @ {t}", fmt(point["specificity"]))
        table.add_row(f"alerts / 100 @ {t}", fmt(point["alerts_per_100"]))
    console.print(table)


def train_real(data_dir: Path, out_dir: Path, seed: int, console: Console) -> None:
    """Train every outcome model on the Mexico case file into ``out_dir``; print the table."""
    try:
        summary = train_mexico(data_dir, out_dir, seed)
    except TriageError as e:
        console.print(f"[red]training failed[/red] ({e.reason.value}): {e.detail}")
        raise typer.Exit(code=2) from e
    counts = summary["training_data"]["counts"]
    console.print(
        f"[bold]models[/bold] in {out_dir}: {counts['cohort']} patients "
        f"(intubation {counts['positive_intubation']}, ICU {counts['positive_icu']}, "
        f"death {counts['positive_death']}) in {summary['training_time_s']} s"
    )
    console.print(f"semi-synthetic odds ratios achieved: {summary['semi_synthetic_odds_ratios']}")
    for split, description in summary["splits"].items():
        table = Table(
            title=f"held-out {split} split ({description})\n[green]REAL[/green]: {REAL_LABEL}\n"
            f"[yellow]SEMI-SYNTHETIC[/yellow]: {semisynthetic.LABEL}"
        )
        for column in ("outcome", "model", "data", "AUC (95% CI)", "Brier", "ECE"):
            table.add_column(column, justify="right", overflow="fold")
        for outcome, per_split in summary["outcomes"].items():
            result = per_split[split]
            rows = [
                ("xgboost fused", "SEMI-SYNTHETIC", result["fused"]),
                ("xgboost clinical", "REAL", result["clinical"]),
            ]
            for name, metrics in result["baselines"].items():
                rows.append((name, "SEMI-SYNTHETIC" if "fused" in name else "REAL", metrics))
            for name, label, metrics in rows:
                table.add_row(
                    outcome, name, label, _auc(metrics), _f(metrics["brier"]), _f(metrics["ece"])
                )
        console.print(table)


def _auc(metrics: dict[str, Any]) -> str:
    ci = metrics.get("auc_ci95")
    text = _f(metrics.get("auc"))
    return f"{text} ({ci[0]:.3f}-{ci[1]:.3f})" if ci else text


def _f(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"
