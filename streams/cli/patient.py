"""``ctriage patient timeline PSEUDONYM [--png FILE]``: one patient's CTs over time.

Reads the patient's scored studies back from ``triage.risk`` and the worsening alerts from
``triage.alerts`` (the pipeline's own records: nothing is recomputed here), prints the table
with the change since each prior CT and, with ``--png``, draws lung burden and CT severity over
time (:func:`triage.timeline_plot.plot_timeline`) with the patient's treatments marked (read
from the reporting store's ``treatments`` table, which the worker fills from FHIR).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from streams import topics as t
from streams.demo.collector import OutputCollector
from streams.demo.summary import ReplayOutcome
from streams.kafka_security import KafkaSecurity
from streams.mapping import timeline_point_of_risk
from streams.records import RiskAssessment
from streams.settings import Settings, load_settings

app = typer.Typer(help="One patient's CT studies over time.", no_args_is_help=True)


def patient_studies(outcome: ReplayOutcome, pseudonym: str) -> list[RiskAssessment]:
    """The patient's scored studies (latest revision each), in CT time."""
    mine = [r for r in outcome.risks.values() if r.patient_pseudonym == pseudonym]
    return sorted(mine, key=lambda r: (timeline_point_of_risk(r).at, r.study_uid))


def worsening_studies(outcome: ReplayOutcome, pseudonym: str) -> set[str]:
    """Studies of the patient that raised a worsening alert."""
    return {
        a.study_uid
        for a in outcome.alerts.values()
        if a.patient_pseudonym == pseudonym and a.kind == "worsening"
    }


def timeline_table(risks: list[RiskAssessment], worsening: set[str], pseudonym: str) -> Table:
    """The printed timeline: burden, severity, category, change since the prior CT."""
    table = Table(title=f"patient {pseudonym}: {len(risks)} CT studies")
    for name in ("CT time", "lesion %", "GGO %", "cons. %", "CT severity", "bilateral",
                 "RSNA", "since prior", "risk", "model"):  # fmt: skip
        table.add_column(name)
    for risk in risks:
        point = timeline_point_of_risk(risk)
        change = risk.change_since_prior
        since = "first CT"
        if change is not None:
            since = f"{change.lesion_points:+.1f} pts in {change.interval_days:.1f} d"
            if risk.study_uid in worsening:
                since += " WORSENING"
        table.add_row(
            point.at.strftime("%Y-%m-%d %H:%M"),
            f"{point.lesion_percent:.1f}",
            f"{point.ggo_percent:.1f}",
            f"{point.consolidation_percent:.1f}",
            "n/a" if point.ct_severity_score is None else f"{point.ct_severity_score:.0f}/30",
            {True: "yes", False: "no", None: "n/a"}[point.bilateral],
            risk.rsna_category or "n/a",
            since,
            f"{risk.probability:.0%} {risk.level}",
            point.model_version,
        )
    return table


def stored_treatments(settings: Settings, pseudonym: str) -> list[tuple[datetime, str]]:
    """The patient's treatments that reached them, from the store: (start, drug) by start."""
    from dashboards import make_engine, patient_treatments

    engine = make_engine(settings.store.url)
    try:
        with engine.connect() as conn:
            rows = patient_treatments(conn, pseudonym)
    finally:
        engine.dispose()
    marks = []
    for row in rows:
        if row["given"]:
            started = row["started_at"]
            marks.append((started if started.tzinfo else started.replace(tzinfo=UTC), row["drug"]))
    return marks


@app.command("timeline")
def timeline(
    pseudonym: Annotated[str, typer.Argument(help="The patient's pseudonym (as on the topics).")],
    png: Annotated[Path | None, typer.Option(help="Also draw the timeline to this PNG.")] = None,
    wait_s: Annotated[float, typer.Option(help="Stop reading after this long idle.")] = 3.0,
) -> None:
    """Print a patient's CT studies over time (and draw them with --png)."""
    console = Console()
    settings = load_settings()
    collector = OutputCollector(
        settings.kafka.bootstrap_servers,
        [t.TRIAGE_RISK.name, t.TRIAGE_ALERTS.name],
        security=KafkaSecurity.from_settings(settings.kafka),
    )
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < wait_s:
        if collector.poll(0.5):
            idle_since = time.monotonic()
    collector.close()
    risks = patient_studies(collector.outcome, pseudonym)
    if not risks:
        console.print(f"[red]no scored study[/red] for patient {pseudonym}")
        raise typer.Exit(1)
    worsening = worsening_studies(collector.outcome, pseudonym)
    console.print(timeline_table(risks, worsening, pseudonym))
    if png is not None:
        from triage.timeline_plot import plot_timeline

        points = [timeline_point_of_risk(r) for r in risks]
        try:
            treatments = stored_treatments(settings, pseudonym)
        except SQLAlchemyError as e:
            console.print(
                f"[yellow]treatments not drawn[/yellow]: store unreachable ({e.__class__.__name__})"
            )
            treatments = []
        plot_timeline(
            points, png, worsening=worsening, treatments=treatments, title=f"patient {pseudonym}"
        )
        console.print(f"wrote {png}")
