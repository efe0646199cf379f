"""What the demo draws: alert lines for the emergency department, summary tables for everyone."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from streams.demo.summary import LatencySummary, SyntheticMatch
from streams.records import Alert, Contribution, DeadLetter, ForecastDay, UnitForecastRecord

if TYPE_CHECKING:
    from streams.demo.run import MonitoringSnapshot

_LEVEL_STYLE = {"high": "bold red", "moderate": "yellow", "low": "green"}


def _reason(c: Contribution) -> str:
    arrow = "↑" if c.direction == "raises" else "↓"
    value = "missing" if c.value is None else f"{c.value:.3g}"
    return f"{c.feature}={value}{arrow}"


def _distribution(alert: Alert) -> str:
    if alert.ct_severity_score is None:
        return ""
    sides = {True: ", bilateral", False: ", one lung", None: ""}[alert.bilateral]
    return f" (CT severity {alert.ct_severity_score:.0f}/30{sides})"


def _pattern_and_change(alert: Alert) -> str:
    parts = [f"RSNA {alert.rsna_category}"] if alert.rsna_category else []
    if change := alert.change_text():
        parts.append(change)
    return f"  [{'; '.join(parts)}]" if parts else ""


def alert_line(alert: Alert) -> str:
    """One line an emergency physician reads: who, how likely, how much lung, why."""
    style = _LEVEL_STYLE.get(alert.level, "white")
    ct_time = datetime.fromisoformat(alert.ct_time).strftime("%a %H:%M")
    reasons = ", ".join(_reason(c) for c in alert.top_features[:3])
    if alert.kind == "worsening":
        secondary = " after a mild first CT" if alert.secondary_worsening else ""
        return (
            f"[bold magenta]WORSENING{secondary}[/] {ct_time}  patient {alert.patient_pseudonym}  "
            f"{alert.change_text()}  [dim](rule {alert.worsening_rule}; risk "
            f"{alert.probability:.0%} {alert.level})[/]"
        )
    return (
        f"[{style}]ALERT {alert.level.upper():8}[/] {ct_time}  patient {alert.patient_pseudonym}  "
        f"risk [bold]{alert.probability:.0%}[/]  lesions {alert.lesion_percent:.1f}% of lung"
        f"{_distribution(alert)}{escape(_pattern_and_change(alert))}  because {reasons}  "
        f"[dim]({alert.completeness}; "
        f"model {alert.model_version}, threshold {alert.threshold_version})[/]"
    )


def dead_letter_line(letter: DeadLetter) -> str:
    """One line saying what was rejected and why."""
    return f"[magenta]REJECTED[/] at {letter.stage}: {letter.reason_code} ({letter.error[:120]})"


def forecast_table(forecast: UnitForecastRecord) -> Table:
    """The bed manager's view: ICU occupancy for the next days against capacity."""
    table = Table(
        title=(
            f"ICU occupancy forecast, {forecast.hospital} (capacity {forecast.capacity} beds; "
            f"{forecast.occupancy_now} in ICU now, "
            f"{forecast.pipeline_patients} at-risk in pipeline)"
            + _breach_line("beds", forecast.breach_alert, forecast.p_breach)
        )
    )
    _add_days(table, forecast.days, forecast.capacity)
    return table


def ventilator_table(forecast: UnitForecastRecord) -> Table | None:
    """Ventilators in use for the same days against the unit's ventilators (None: not known)."""
    vents = forecast.ventilators
    if vents is None:
        return None
    table = Table(
        title=(
            f"Ventilators in use forecast, {forecast.hospital} (capacity {vents.capacity} "
            f"ventilators; {vents.in_use_now} in use now)"
            + _breach_line("ventilators", vents.breach_alert, vents.p_breach)
        )
    )
    _add_days(table, vents.days, vents.capacity)
    return table


def _breach_line(resource: str, alert: bool, p_breach: float | None) -> str:
    if not alert or p_breach is None:
        return ""
    return (
        f"\n[bold red]BREACH ALERT ({resource})[/]: P(over capacity within the horizon) = "
        f"{p_breach:.0%}"
    )


def _add_days(table: Table, days: list[ForecastDay], capacity: int) -> None:
    columns = ("day", "median", "expected", "80% interval", "95% interval", "P(over capacity)")
    for column in (*columns, ""):
        table.add_column(column, justify="right")
    for day in days:
        bar = "█" * round(day.expected) + "░" * max(0, round(day.upper80) - round(day.expected))
        over = day.upper80 > capacity
        table.add_row(
            day.date,
            "n/a" if day.median is None else f"{day.median:.0f}",
            f"{day.expected:.1f}",
            f"{day.lower80:.0f}-{day.upper80:.0f}",
            f"{day.lower95:.0f}-{day.upper95:.0f}"
            if day.lower95 is not None and day.upper95 is not None
            else "n/a",
            f"{day.p_exceed:.0%}",
            f"[red]{bar}[/]" if over else bar,
        )


def summary_table(
    studies: int,
    scored: int,
    rejected: int,
    alerts: int,
    elapsed_s: float,
    latency: LatencySummary | None,
    peak_rss_mb: dict[str, float],
) -> Table:
    """Throughput, latency and memory of the run."""
    table = Table(title="Pipeline summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("CT studies replayed", str(studies))
    table.add_row("risk records (one per study)", str(scored))
    table.add_row("studies dead-lettered", str(rejected))
    table.add_row("alerts raised", str(alerts))
    table.add_row("wall time", f"{elapsed_s:.1f} s ({60 * scored / max(elapsed_s, 1e-9):.1f}/min)")
    if latency is not None:
        table.add_row(
            "end-to-end latency p50 / p95", f"{latency.p50_s:.2f} s / {latency.p95_s:.2f} s"
        )
        table.add_row(
            "mean load / Triton / scoring",
            f"{latency.mean_load_s * 1000:.0f} / {latency.mean_inference_s * 1000:.0f} / "
            f"{latency.mean_scoring_s * 1000:.1f} ms",
        )
    for name, rss in sorted(peak_rss_mb.items()):
        table.add_row(f"peak memory, {name}", f"{rss:.0f} MB")
    return table


def synthetic_table(match: SyntheticMatch) -> Table:
    """How alerts matched simulated outcomes, clearly labelled synthetic."""
    table = Table(
        title="[bold yellow]SYNTHETIC[/] cohort: alerts vs simulated ventilation "
        "(checks the plumbing, not clinical validity)",
        show_header=False,
    )
    table.add_column("what")
    table.add_column("value", justify="right")

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.0%}"

    table.add_row("scored studies / simulated ventilated", f"{match.studies} / {match.ventilated}")
    table.add_row("alerts / of which ventilated", f"{match.alerted} / {match.true_alerts}")
    table.add_row("sensitivity (synthetic)", pct(match.sensitivity))
    table.add_row("PPV (synthetic)", pct(match.ppv))
    table.add_row("AUC of risk (synthetic)", "n/a" if match.auc is None else f"{match.auc:.2f}")
    return table


def monitoring_line(snapshot: MonitoringSnapshot) -> str:
    """One line on what Prometheus recorded of the run."""

    def number(value: float | None) -> str:
        return "not scraped yet" if value is None else f"{value:.0f}"

    firing = ", ".join(snapshot.firing) if snapshot.firing else "none"
    return (
        f"Prometheus {snapshot.url}: messages processed {number(snapshot.messages)}, "
        f"dead-lettered {number(snapshot.dead_letters)}; alerts firing: {firing}"
    )


def make_console() -> Console:
    """The console the CLI draws on."""
    return Console(highlight=False)
