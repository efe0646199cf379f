"""``ctriage dashboards build|push|list``: Grafana dashboards as code.

``build`` writes each dashboard's JSON model to ``<uid>.json`` (for file provisioning or review);
``push`` upserts them into a Grafana over its HTTP API with a service-account token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dashboards import DASHBOARDS, DEFAULT_TIMEOUT_S, DashboardPushError, push_dashboard

EXIT_PUSH_FAILED = 1

app = typer.Typer(
    help="Build Grafana dashboards as JSON, or push them to a Grafana.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
error_console = Console(stderr=True)


@app.command()
def build(
    out: Annotated[Path, typer.Option(help="Folder to write <uid>.json files into.")],
) -> None:
    """Write every dashboard's JSON model to OUT/<uid>.json."""
    out.mkdir(parents=True, exist_ok=True)
    for build_model in DASHBOARDS.values():
        model = build_model()
        path = out / f"{model['uid']}.json"
        path.write_text(json.dumps(model, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        console.print(f"[green]✓[/] {path}", soft_wrap=True)


@app.command()
def push(
    url: Annotated[
        str, typer.Option(envvar="GRAFANA_URL", help="Grafana base URL, e.g. http://host:3000/.")
    ],
    token: Annotated[
        str,
        typer.Option(
            envvar="GRAFANA_TOKEN",
            help="Service-account token (prefer the GRAFANA_TOKEN variable: options show in ps).",
            show_default=False,
        ),
    ],
    folder_uid: Annotated[
        str | None, typer.Option(help="Folder to store the dashboards in (default: General).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace a dashboard with the same uid or title.")
    ] = True,
    timeout_s: Annotated[float, typer.Option(help="Seconds to wait for Grafana.")] = (
        DEFAULT_TIMEOUT_S
    ),
) -> None:
    """Create or update every dashboard in a Grafana (upsert by uid)."""
    for build_model in DASHBOARDS.values():
        try:
            pushed = push_dashboard(
                url, token, build_model(), folder_uid, overwrite=overwrite, timeout_s=timeout_s
            )
        except DashboardPushError as e:
            error_console.print(f"[red]push failed:[/] {e}", soft_wrap=True)
            raise typer.Exit(EXIT_PUSH_FAILED) from e
        version = "" if pushed.version is None else f" version {pushed.version}"
        console.print(f"[green]✓[/] {pushed.uid}{version} {pushed.url or ''}", soft_wrap=True)


@app.command("list")
def list_dashboards() -> None:
    """Show the dashboards the project ships."""
    table = Table(title="ctriage dashboards")
    for column in ("name", "uid", "title", "panels"):
        table.add_column(column)
    for name, build_model in DASHBOARDS.items():
        model = build_model()
        table.add_row(name, model["uid"], model["title"], str(len(model.get("panels", []))))
    console.print(table)
