"""``ctriage dlq replay``: send dead letters back to their topic once the cause is fixed."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from streams.dlq_replay import ReplayError, replay_dead_letters
from streams.kafka_security import KafkaSecurity
from streams.settings import load_settings

app = typer.Typer(help="Dead-letter topics.", no_args_is_help=True)
console = Console()


@app.command("replay")
def replay(
    topic: Annotated[str, typer.Option("--topic", help="Dead-letter topic, e.g. ct.studies.dlq.")],
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason", help="Replay only letters of this reason (e.g. triton_unavailable)."
        ),
    ] = None,
    idle_timeout_s: Annotated[
        float, typer.Option(help="Stop reading once no letter arrived for this long.")
    ] = 5.0,
) -> None:
    """Re-publish dead letters' original key and payload to their source topic (same ids)."""
    settings = load_settings()
    try:
        report = replay_dead_letters(
            settings.kafka.bootstrap_servers,
            topic,
            reason,
            idle_timeout_s=idle_timeout_s,
            security=KafkaSecurity.from_settings(settings.kafka),
        )
    except ReplayError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(2) from e
    table = Table(title=f"dead letters on {report.topic}")
    table.add_column("reason")
    table.add_column("letters", justify="right")
    for code, count in sorted(report.found.items()):
        table.add_row(code, str(count))
    console.print(table)
    console.print(
        f"replayed {report.replayed} to {report.topic.removesuffix('.dlq')}, "
        f"skipped {report.skipped} (other reasons), unreadable {report.unreadable}"
    )
