"""``ctriage thresholds show|set|history`` and ``ctriage admin-api``: alert levels per hospital.

``show`` prints the model card's operating points with the expected alerts per day (volume from
``--studies-per-day`` or the store's last 7 days) and the levels in force for one hospital (from
``triage.config``; the worker's default when Kafka cannot be read). ``set`` publishes a change the
way the admin API does (same validation, same audit record, ``source`` = cli), or, with
``--api URL`` (and a bearer token from ``--token`` or ``CTRIAGE_ADMIN_TOKEN``), sends it to a
running admin API, which authenticates the user and checks the role (the audit then names the
token's user, ``source`` = admin-api): what a site should use once the broker is closed to
administrators. ``history`` prints the audit trail.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from streams.admin.policy_log import PolicyLog, PolicyLogError, calibration_view
from streams.admin.serve import default_policy, serve_admin_api, with_log
from streams.admin.volume import study_volume
from streams.cli.common import configure_logging, fmt
from streams.settings import Settings, load_settings
from triage.alerts import (
    NAMED_LEVELS,
    AlertPolicy,
    OperatingPointRow,
    ThresholdChange,
    operating_point_rows,
    parse_level_name,
)
from triage.exceptions import TriageError
from triage.risk import SYNTHETIC_LABEL, RiskModel, calibration_of, load_card

app = typer.Typer(
    help="Alert levels per hospital: operating points, changes, audit trail.",
    no_args_is_help=True,
)
console = Console()


@app.command("show")
def show(
    model: Annotated[
        Path | None, typer.Option("--model", help="Model (.ubj); default: the worker's.")
    ] = None,
    hospital: Annotated[
        str | None, typer.Option("--hospital", help="Hospital; default: the worker's.")
    ] = None,
    studies_per_day: Annotated[
        float | None,
        typer.Option("--studies-per-day", help="Study volume (default: the store's last 7 days)."),
    ] = None,
) -> None:
    """Operating points of the model, expected alerts per day, and the levels in force."""
    settings = load_settings()
    path = model or settings.worker.risk_model_path
    where = hospital or settings.worker.hospital
    try:
        RiskModel.load(path)  # refuses a model whose card or features do not match the code
        card = load_card(path)
    except TriageError as e:
        console.print(f"[red]cannot read model[/red] ({e.reason.value}): {e.detail}")
        raise typer.Exit(code=2) from e

    async def read(log: PolicyLog) -> tuple[AlertPolicy, str]:
        found = log.in_force(where)
        record = found.record
        origin = (
            f"triage.config, set by {record.changed_by}: {record.reason}"
            if record is not None
            else "default (worker settings; no triage.config record)"
        )
        return found.policy, origin

    try:
        policy, origin = with_log(settings, read)
    except PolicyLogError as e:
        policy, origin = default_policy(settings), f"default: Kafka not reachable ({e})"
        console.print(f"[yellow]{origin}[/yellow]")
    volume = study_volume(settings.store.url, studies_per_day)
    rows = operating_point_rows(card, volume.studies_per_day, policy)
    console.print(operating_points_table(card, rows, volume.source))
    console.print(levels_table(where, policy, origin))


def levels_table(hospital: str, policy: AlertPolicy, origin: str) -> Table:
    """The levels in force for one hospital."""
    table = Table(
        title=f"levels in force for {hospital}: version {policy.threshold_version}",
        caption=origin,
    )
    for column in ("level", "from probability", "alerts"):
        table.add_column(column)
    for level in NAMED_LEVELS:
        alerts = "yes" if level.rank >= policy.alert_from.rank else "no"
        table.add_row(str(level), f"{policy.levels[level]:g}", alerts)
    rule = policy.worsening
    table.add_row(
        "worsening",
        rule.version if rule is not None else "worker setting (CTRIAGE_WORKER__WORSENING_*)",
        "yes",
    )
    shown = calibration_view(policy.calibration)
    table.add_row(
        "risk model",
        "as loaded (no site calibration)"
        if shown is None
        else f"{shown['model_version']} ({shown['site_calibration']['layer'].get('method')} "
        f"layer of {shown['site_calibration'].get('site')})",
        "",
    )
    return table


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
        table.add_row(*(fmt(c) for c in cells), ", ".join(row.levels))
    return table


@app.command("set")
def set_level(
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit trail).")],
    level: Annotated[
        str | None, typer.Option("--level", help="moderate, high or critical (with --value).")
    ] = None,
    value: Annotated[
        float | None, typer.Option("--value", help="Probability the level starts at.")
    ] = None,
    worsening_lesion_points: Annotated[
        float | None,
        typer.Option(help="Worsening rule: lesion % rise (percentage points) that alerts."),
    ] = None,
    worsening_severity_points: Annotated[
        float | None, typer.Option(help="Worsening rule: CT severity score rise that alerts.")
    ] = None,
    worsening_aerated_points: Annotated[
        float | None,
        typer.Option(help="Worsening rule: fall of well-aerated lung % (points) that alerts."),
    ] = None,
    worsening_days: Annotated[
        float | None, typer.Option(help="Worsening rule: within how many days the rise counts.")
    ] = None,
    hospital: Annotated[
        str | None, typer.Option("--hospital", help="Hospital; default: the worker's.")
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who; default: the OS user.")] = None,
    alert_from: Annotated[
        str | None, typer.Option("--alert-from", help="Lowest alerting level (optional).")
    ] = None,
    expected_version: Annotated[
        str | None,
        typer.Option("--expected-version", help="Refuse if the version in force differs."),
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option(
            "--calibration",
            help="Folder of ctriage risk recalibrate: score this hospital with its site "
            "calibration (the model named like the worker's, e.g. DIR/ventilation.ubj).",
        ),
    ] = None,
    no_calibration: Annotated[
        bool,
        typer.Option("--no-calibration", help="Score this hospital with the model as loaded."),
    ] = False,
    api: Annotated[
        str | None,
        typer.Option("--api", help="Admin API base URL: change through it, not through Kafka."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="CTRIAGE_ADMIN_TOKEN",
            help="Bearer token for --api.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Change levels, worsening rule or site calibration: new triage.config version + audit."""
    settings = load_settings()
    worsening = {
        name: v
        for name, v in (
            ("lesion_rise_points", worsening_lesion_points),
            ("severity_rise_points", worsening_severity_points),
            ("aerated_fall_points", worsening_aerated_points),
            ("within_days", worsening_days),
        )
        if v is not None
    }
    recalibrating = calibration is not None or no_calibration
    if (
        (level is None) != (value is None)
        or (level is None and not worsening and not recalibrating)
        or (calibration is not None and no_calibration)
    ):
        console.print(
            "[red]refused[/red]: give --level with --value, a --worsening-* option and/or "
            "one of --calibration DIR, --no-calibration"
        )
        raise typer.Exit(code=2)
    levels: dict[str, float] = {}
    site: dict[str, Any] | None = {} if no_calibration else None  # {}: NO_CALIBRATION
    try:
        if level is not None and value is not None:
            levels[str(parse_level_name(level))] = value
        if alert_from is not None:
            parse_level_name(alert_from)
        if calibration is not None:
            site = calibration_of(calibration / settings.worker.risk_model_path.name)
    except TriageError as e:  # ConfigRejected, or a folder whose model does not load
        console.print(f"[red]refused[/red] ({e.reason.value}): {e.detail}")
        raise typer.Exit(code=2) from e
    if api is not None:
        if by is not None:
            console.print("[red]--by is not taken with --api[/red]: the token says who you are")
            raise typer.Exit(code=2)
        body: dict[str, Any] = {"levels": levels, "reason": reason}
        if worsening:
            body["worsening"] = worsening
        if alert_from is not None:
            body["alert_from"] = alert_from
        if expected_version is not None:
            body["expected_version"] = expected_version
        if site is not None:
            body["calibration"] = site
        set_through_api(api, token, hospital or settings.worker.hospital, body)
        return
    change = ThresholdChange(
        hospital=hospital or settings.worker.hospital,
        levels=levels,
        reason=reason,
        changed_by=by or getpass.getuser(),
        alert_from=alert_from,
        expected_version=expected_version,
        worsening=worsening or None,
        calibration=site,
    )
    set_through_kafka(settings, change)


def set_through_kafka(settings: Settings, change: ThresholdChange) -> None:
    """Publish a change on triage.config; print what it did (exit 2 refused, 3 unreachable)."""

    async def apply(log: PolicyLog) -> tuple[AlertPolicy, str | None, str | None]:
        result = await log.change(change, "threshold-admin", "cli")
        policy = log.in_force(change.hospital).policy
        if result is None:
            return policy, None, None
        applied, audit = result
        return policy, applied.old.threshold_version, audit.audit_id

    try:
        policy, old_version, audit_id = with_log(settings, apply, writes=True)
    except TriageError as e:  # ConfigRejected, or the workers' model does not load
        console.print(f"[red]refused[/red] ({e.reason.value}): {e.detail}")
        raise typer.Exit(code=2) from e
    except PolicyLogError as e:
        console.print(f"[red]Kafka unavailable[/red]: {e}")
        raise typer.Exit(code=3) from e
    if old_version is None:
        console.print(f"unchanged: {change.hospital} is already at {policy.threshold_version}")
    else:
        console.print(
            f"{change.hospital}: {old_version} -> {policy.threshold_version} "
            f"(audit {audit_id}); workers apply it to their next score"
        )
    console.print(levels_table(change.hospital, policy, f"set by {change.changed_by}"))


def set_through_api(base_url: str, token: str | None, hospital: str, body: dict[str, Any]) -> None:
    """POST a change to the admin API; print what it answered (exit 2 refused, 3 unreachable)."""
    import requests

    if not token:
        console.print("[red]--api needs a token[/red] (--token or CTRIAGE_ADMIN_TOKEN)")
        raise typer.Exit(code=2)
    url = f"{base_url.rstrip('/')}/v1/policies/{quote(hospital, safe='')}/changes"
    try:
        response = requests.post(
            url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
    except requests.RequestException as e:
        console.print(f"[red]admin API unavailable[/red] at {base_url}: {e}")
        raise typer.Exit(code=3) from e
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": "not_json", "detail": response.text[:200]}
    if response.status_code == 503:
        console.print(f"[red]admin API: Kafka unavailable[/red]: {answer.get('detail')}")
        raise typer.Exit(code=3)
    if not 200 <= response.status_code < 300:
        console.print(
            f"[red]refused[/red] (HTTP {response.status_code}, {answer.get('error')}): "
            f"{answer.get('detail')}"
        )
        raise typer.Exit(code=2)
    policy = answer["policy"]
    in_force = AlertPolicy.from_dict(policy)
    if not answer["changed"]:
        console.print(f"unchanged: {hospital} is already at {in_force.threshold_version}")
    else:
        console.print(
            f"{hospital}: {answer['previous_version']} -> {in_force.threshold_version} "
            f"(audit {answer['audit_id']}, through the admin API); workers apply it to their "
            "next score"
        )
    console.print(levels_table(hospital, in_force, f"set by {policy['changed_by']}"))


@app.command("history")
def history(
    hospital: Annotated[
        str | None, typer.Option("--hospital", help="Hospital; default: the worker's.")
    ] = None,
) -> None:
    """The audit trail of a hospital's policy (from triage.audit), oldest first."""
    settings = load_settings()
    where = hospital or settings.worker.hospital

    async def read(log: PolicyLog) -> list[tuple[str, ...]]:
        return [
            (
                f"{a.changed_at:.0f}",
                a.changed_by,
                a.role,
                a.source,
                f"{a.old_version} -> {a.new_version}",
                _levels_text(a.old_policy),
                _levels_text(a.new_policy),
                a.reason,
            )
            for a in log.audit_trail(where)
        ]

    try:
        rows = with_log(settings, read)
    except PolicyLogError as e:
        console.print(f"[red]Kafka unavailable[/red]: {e}")
        raise typer.Exit(code=3) from e
    table = Table(title=f"alert policy changes of {where}")
    for column in ("epoch s", "by", "role", "via", "version", "old", "new", "reason"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def admin_api(
    port: Annotated[int | None, typer.Option(help="Port (default CTRIAGE_ADMIN__PORT).")] = None,
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Serve the threshold administration API (OpenAPI at /openapi.json) until Ctrl-C."""
    configure_logging(loglevel)
    serve_admin_api(load_settings(), port)


def _levels_text(policy: dict[str, object] | None) -> str:
    if not policy:
        return "-"
    levels = policy.get("levels")
    if not isinstance(levels, dict):
        return "-"
    return ", ".join(f"{k} {v}" for k, v in levels.items())
