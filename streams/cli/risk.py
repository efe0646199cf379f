"""``ctriage risk score|validate|recalibrate`` and ``ctriage train``: the risk models.

``app`` is the ``risk`` group; :func:`train` is mounted at the root as ``ctriage train``
(``--mexico``: the shipped models on REAL data; ``--cohort``: a SYNTHETIC model).
``validate`` measures the models on a table with outcomes (docs/risk-validation.md);
``recalibrate`` writes a model folder with a site's calibration layer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from streams.cli.common import fmt
from streams.imaging import DICOM_BIOMARKER_SOURCE, dicom_biomarkers
from triage.exceptions import TriageError
from triage.risk import (
    DEFAULT_THRESHOLDS,
    MODELS_DIR,
    REAL_LABEL,
    SEMI_SYNTHETIC_LABEL,
    SYNTHETIC_LABEL,
    RiskPanel,
    file_digest,
    read_table,
    recalibrate,
    score_csv,
    train_from_cohort,
    train_mexico,
    validate,
)

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


ModelsOption = Annotated[
    Path, typer.Option("--models", help="Folder with <outcome>[_clinical].ubj + cards.")
]


@app.command("validate")
def validate_command(
    csv_in: Annotated[
        Path, typer.Option("--csv", help="Patients with outcome columns ventilation/icu/death.")
    ],
    models: ModelsOption = MODELS_DIR,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the full report (JSON) here.")
    ] = None,
    plots: Annotated[
        Path | None, typer.Option("--plots", help="Folder for the reliability plots (PNG).")
    ] = None,
    threshold: Annotated[
        list[float] | None,
        typer.Option("--threshold", help="Alert threshold(s) for net benefit (repeatable)."),
    ] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="AUC bootstrap replicates.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap and CV folds.")] = 2020,
) -> None:
    """AUC (95% CI) vs age alone, comorbidity count and the table's own ceiling; calibration."""
    try:
        panel = RiskPanel.load(models)
        report = validate(
            read_table(csv_in),
            panel,
            thresholds=tuple(threshold or DEFAULT_THRESHOLDS),
            n_boot=bootstrap,
            seed=seed,
            plot_dir=plots if plots is not None else (json_out.parent if json_out else None),
        )
    except TriageError as e:
        console.print(f"[red]cannot validate[/red] ({e.reason.value}): {e.detail}")
        raise typer.Exit(code=2) from e
    except (OSError, ValueError, UnicodeDecodeError) as e:
        console.print(f"[red]cannot validate[/red]: {e}")
        raise typer.Exit(code=2) from e
    console.print(
        f"{report['scored']} of {report['rows']} rows scored, {report['rejected']} rejected "
        f"({', '.join(f'{k} {v}' for k, v in sorted(report['rejections'].items())) or 'none'}); "
        f"fields recorded: {', '.join(report['fields_recorded'])}"
    )
    for error in report["errors"][:10]:
        console.print(f"  [yellow]{error}[/yellow]")
    console.print(_validation_table(report))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        console.print(f"report -> {json_out}")


def _validation_table(report: dict[str, Any]) -> Table:
    table = Table(title="[green]REAL[/green] outcomes of this table; same rows in every column")
    columns = ("outcome", "n (events)", "model AUC", "age alone", "comorbidity count",
               "own ceiling (CV)", "CITL", "slope", "Brier", "net benefit @ t")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right", overflow="fold")
    for name, entry in report["outcomes"].items():
        if "refused" in entry:
            table.add_row(name, str(entry["n"]), f"refused: {entry['refused']}")
            continue
        benefit = " ".join(
            f"{p['threshold']:g}: {p['model']:.3f} (all {p['treat_all']:.3f})"
            for p in entry["net_benefit"]
        )
        count = entry["comorbidity_count"]
        table.add_row(
            name,
            f"{entry['n']} ({entry['events']})",
            _auc(entry["model"]),
            _auc(entry["age_alone"]),
            _auc(count) if count else "n/a",
            _auc(entry["ceiling_logistic_cv"] or {}),
            _f(entry["calibration_in_the_large"]),
            _f(entry["calibration_slope"]),
            _f(entry["brier"]),
            benefit,
        )
    return table


@app.command("recalibrate")
def recalibrate_command(
    csv_in: Annotated[
        Path, typer.Option("--csv", help="The site's scored patients with their outcomes.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write (versioned).")],
    models: ModelsOption = MODELS_DIR,
    site: Annotated[
        str | None, typer.Option("--site", help="Site name for the card (default: CSV name).")
    ] = None,
) -> None:
    """Fit a calibration layer per outcome on a site's outcomes; write a model folder."""
    try:
        panel = RiskPanel.load(models)
        summary = recalibrate(
            read_table(csv_in),
            panel,
            out,
            site=site or csv_in.stem,
            source_sha256=file_digest(csv_in),
            models_dir=models,
        )
    except TriageError as e:
        console.print(f"[red]cannot recalibrate[/red] ({e.reason.value}): {e.detail}")
        raise typer.Exit(code=2) from e
    except (OSError, ValueError, UnicodeDecodeError) as e:
        console.print(f"[red]cannot recalibrate[/red]: {e}")
        raise typer.Exit(code=2) from e
    for name, entry in summary["outcomes"].items():
        if "refused" in entry:
            console.print(
                f"{name}: [yellow]refused[/yellow] ({entry['refused']}): {entry['detail']}"
            )
            continue
        versions = ", ".join(f"{a} {v}" for a, v in entry["versions"].items())
        console.print(
            f"{name}: {entry['method']} layer on {entry['rows']} patients "
            f"({entry['events']} events) -> {versions}"
        )
    console.print(f"models -> {out} (ctriage risk score --models {out}; worker: see docs)")


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
            f"[yellow]SEMI-SYNTHETIC[/yellow]: {SEMI_SYNTHETIC_LABEL}"
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
