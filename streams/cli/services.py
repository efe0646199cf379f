"""``ctriage services up|down|status``: local Kafka, Triton, PostgreSQL and Prometheus."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deploy import LocalServices, ServiceError, ServiceNameValues, ServiceStatus, recorded_nodes
from streams.services import services_from_settings
from streams.settings import load_settings

app = typer.Typer(
    help="Run the local Kafka broker (or cluster) and Triton server.", no_args_is_help=True
)
console = Console()

Only = Annotated[
    list[ServiceNameValues] | None,
    typer.Option("--only", help="Act on this service only (repeatable)."),
]


def _print(statuses: list[ServiceStatus]) -> None:
    table = Table(title="ctriage local services")
    for column in ("service", "state", "endpoint", "pid", "RSS MiB", "run dir"):
        table.add_column(column)
    colours = {"running": "green", "unhealthy": "yellow", "stopped": "dim", "port busy": "red"}
    for s in statuses:
        table.add_row(
            s.name.value,
            f"[{colours[s.state.value]}]{s.state.value}[/]",
            s.endpoint,
            str(s.pid or "-"),
            f"{s.rss_mb:.0f}" if s.rss_mb is not None else "-",
            str(s.run_dir),
        )
    console.print(table)


KafkaNodes = Annotated[
    int | None,
    typer.Option(
        "--kafka-nodes",
        min=1,
        help="Kafka nodes on loopback (default: CTRIAGE_KAFKA__NODES, 1; 3 for a real cluster).",
    ),
]


def _services(
    kafka_nodes: int | None = None, model_repository: Path | None = None
) -> LocalServices:
    """The local services; a cluster launched earlier is found again by its node folders."""
    settings = load_settings()
    nodes = kafka_nodes or recorded_nodes(settings.run_dir / "kafka")
    return services_from_settings(settings, model_repository, kafka_nodes=nodes)


def _names(only: list[ServiceNameValues] | None) -> list[ServiceNameValues]:
    return list(only) if only else list(ServiceNameValues)


@app.command()
def up(
    only: Only = None,
    model_repository: Annotated[
        Path | None, typer.Option(help="Triton model repository (default: from settings).")
    ] = None,
    timeout_s: Annotated[float, typer.Option(help="Seconds to wait for each service.")] = 120,
    kafka_nodes: KafkaNodes = None,
) -> None:
    """Start the services in the background and return once they are healthy."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    services = _services(kafka_nodes, model_repository)
    try:
        statuses = services.up(_names(only), kafka_timeout_s=timeout_s, triton_timeout_s=timeout_s)
    except ServiceError as e:
        console.print(f"[red]{e}[/]")
        _print(services.status())
        raise typer.Exit(1) from e
    _print(statuses)


@app.command()
def down(
    only: Only = None,
    timeout_s: Annotated[float, typer.Option(help="Seconds before SIGKILL.")] = 30,
) -> None:
    """Stop the services started by ``up`` (found through their pid files)."""
    services = _services()
    try:
        statuses = services.down(_names(only), timeout_s=timeout_s)
    except ServiceError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1) from e
    _print(statuses)


@app.command()
def status() -> None:
    """Show whether each service runs, is healthy, and how much memory it holds."""
    _print(_services().status())
