"""``ctriage ingest-fhir|fhir-endpoint``: FHIR resources in, validated and pseudonymised.

Plain functions; :mod:`streams.cli.root` registers each as a command of ``ctriage``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streams.cli.common import configure_logging, pseudonymiser
from streams.settings import load_settings


def ingest_fhir_command(
    path: Annotated[Path, typer.Argument(help="FHIR .json (resource/Bundle), .ndjson, or folder.")],
    fhir_version: Annotated[
        str, typer.Option(help="FHIR release of the files: 4.0 or 5.0.")
    ] = "4.0",
    dry_run: Annotated[bool, typer.Option(help="Validate and count; publish nothing.")] = False,
) -> None:
    """Validate, pseudonymise and publish FHIR resources to fhir.resources; print counts."""
    from streams.sources.fhir_ingest import (
        CollectingSink,
        FhirIngress,
        FhirSink,
        KafkaFhirSink,
        report_lines,
    )
    from triage.fhir.parse import declared_version

    settings = load_settings()
    sink: FhirSink = (
        CollectingSink() if dry_run else KafkaFhirSink(settings.kafka.bootstrap_servers)
    )
    ingress = FhirIngress(
        pseudonymiser(settings),
        settings.worker.hospital,
        sink,
        source="ingest-fhir",
        quarantine_dir=settings.run_dir / "quarantine",
    )
    try:
        report = ingress.ingest_path(path, declared_version(fhir_version))
    finally:
        if isinstance(sink, KafkaFhirSink):
            sink.close()
    for line in report_lines(report):
        typer.echo(line)
    if report.rejections and not report.used:
        raise typer.Exit(1)


def fhir_endpoint_command(
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Serve the FHIR REST ingress (POST /fhir, OpenAPI at /openapi.json) until Ctrl-C."""
    from aiohttp import web

    from streams.sources.fhir_http import build_app
    from streams.sources.fhir_ingest import KafkaFhirSink

    configure_logging(loglevel)
    settings = load_settings()
    sink = KafkaFhirSink(settings.kafka.bootstrap_servers)
    http = build_app(
        pseudonymiser(settings),
        settings.worker.hospital,
        sink,
        quarantine_dir=settings.run_dir / "quarantine",
    )
    try:
        web.run_app(http, host=settings.fhir.http_host, port=settings.fhir.http_port)
    finally:
        sink.close()
