"""``ctriage ingest-fhir|fhir-endpoint``: FHIR resources in, validated and pseudonymised.

Plain functions; :mod:`streams.cli.root` registers each as a command of ``ctriage``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from streams.cli.common import configure_logging, pseudonymiser
from streams.kafka_security import KafkaSecurity
from streams.settings import Settings, load_settings

if TYPE_CHECKING:
    from streams.sources.fhir_ingest import KafkaFhirSink
    from streams.sources.quarantine import Quarantine

logger = logging.getLogger(__name__)

#: exit code of a command that could not reach a service it needs (Kafka)
EXIT_UNAVAILABLE = 2


def ingest_fhir_command(
    path: Annotated[Path, typer.Argument(help="FHIR .json (resource/Bundle), .ndjson, or folder.")],
    fhir_version: Annotated[
        str, typer.Option(help="FHIR release of the files: 4.0 or 5.0.")
    ] = "4.0",
    dry_run: Annotated[
        bool,
        typer.Option(help="Validate and count; publish nothing and write nothing (no quarantine)."),
    ] = False,
) -> None:
    """Validate, pseudonymise and publish FHIR resources to fhir.resources; print counts."""
    from streams.sources.fhir_ingest import CollectingSink, FhirIngress, FhirSink, KafkaFhirSink
    from streams.sources.fhir_report import report_lines
    from triage.exceptions import FhirRejected
    from triage.fhir import declared_version

    try:
        version = declared_version(fhir_version)
    except FhirRejected as e:
        raise typer.BadParameter(e.why, param_hint="--fhir-version") from e
    settings = load_settings()
    sink: FhirSink = CollectingSink() if dry_run else _kafka_sink(settings)
    ingress = FhirIngress(
        pseudonymiser(settings),
        settings.worker.hospital,
        sink,
        source="ingest-fhir",
        quarantine=None if dry_run else quarantine(settings),
        r5_hint="run with --fhir-version 5.0",
    )
    try:
        report = ingress.ingest_path(path, version)
    finally:
        if isinstance(sink, KafkaFhirSink):
            _close(sink)
    for line in report_lines(report):
        typer.echo(line)
    if dry_run:
        typer.echo("dry run: nothing published, nothing written")
    if report.rejections and not report.used:
        raise typer.Exit(1)


def fhir_endpoint_command(
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Serve the FHIR REST ingress (POST /fhir, OpenAPI at /openapi.json) until Ctrl-C."""
    from aiohttp import web

    from streams.sources.fhir_auth import FhirAuthenticator
    from streams.sources.fhir_http import build_app

    configure_logging(loglevel)
    settings = load_settings()
    try:
        authenticator = FhirAuthenticator.from_settings(settings.fhir)
    except (OSError, ValueError) as e:  # an unreadable or malformed key file
        typer.echo(f"error: cannot load the FHIR endpoint's credentials: {e}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from e
    if not authenticator.configured:
        logger.warning(
            "no FHIR credentials configured (CTRIAGE_FHIR__TOKENS, CTRIAGE_FHIR__JWT_*): "
            "every POST gets 401"
        )
    sink = _kafka_sink(settings)
    http = build_app(
        pseudonymiser(settings),
        settings.worker.hospital,
        sink,
        authenticator,
        quarantine=quarantine(settings),
    )
    try:
        web.run_app(http, host=settings.fhir.http_host, port=settings.fhir.http_port, print=None)
    finally:
        _close(sink)


def quarantine(settings: Settings) -> Quarantine:
    """The ingress quarantine of the settings (``$CTRIAGE_RUN_DIR/quarantine``, bounded)."""
    from streams.sources.quarantine import Quarantine

    return Quarantine(
        settings.run_dir / "quarantine",
        max_files=settings.fhir.quarantine_max_files,
        max_bytes=int(settings.fhir.quarantine_max_mb * 2**20),
    )


def _kafka_sink(settings: Settings) -> KafkaFhirSink:
    """A producer once the broker answers; a clear error and exit code 2 if it never does."""
    from streams.sources.fhir_ingest import KafkaFhirSink, KafkaUnavailable

    bootstrap = settings.kafka.bootstrap_servers
    wait_s = settings.fhir.kafka_wait_s
    logger.info("connecting to Kafka at %s (waiting up to %g s)", bootstrap, wait_s)
    try:
        return KafkaFhirSink(
            bootstrap,
            wait_s,
            settings.fhir.kafka_send_timeout_s,
            security=KafkaSecurity.from_settings(settings.kafka),
        )
    except KafkaUnavailable as e:
        typer.echo(
            f"error: {e}. Is Kafka running (`ctriage services up --only kafka`) and "
            "CTRIAGE_KAFKA__BOOTSTRAP_SERVERS right? Wait longer with CTRIAGE_FHIR__KAFKA_WAIT_S.",
            err=True,
        )
        raise typer.Exit(EXIT_UNAVAILABLE) from e


def _close(sink: KafkaFhirSink) -> None:
    from streams.sources.fhir_ingest import KafkaUnavailable

    try:
        sink.close()
    except KafkaUnavailable as e:
        typer.echo(f"error: {e}: what was sent last may not have been published", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from e
