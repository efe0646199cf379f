"""``ctriage``: the one command that fronts everything (services, demo, worker, replay, models)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import psutil
import typer

from streams.cli import capacity, risk, thresholds
from streams.cli.cohort import app as cohort_app
from streams.cli.dashboards import app as dashboards_app
from streams.cli.quantify import app as quantify_app
from streams.cli.services import app as services_app
from streams.settings import Settings, load_settings

if TYPE_CHECKING:
    from streams.sources.publish import StudyPublisher

app = typer.Typer(
    name="ctriage",
    help="Streaming triage of viral pneumonia on chest CT (Kafka, Triton, FHIR, XGBoost).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(services_app, name="services", help="Local Kafka broker and Triton server.")
app.add_typer(cohort_app, name="cohort", help="Synthetic cohorts (FHIR + DICOM + outcomes).")
app.add_typer(dashboards_app, name="dashboards", help="Grafana dashboards as code.")
app.add_typer(quantify_app, name="quantify", help="Quantify lesions on a CT series.")
app.add_typer(capacity.app, name="capacity")
app.add_typer(risk.app, name="risk")
app.add_typer(thresholds.app, name="thresholds")
app.command("train")(risk.train)
app.command("admin-api")(thresholds.admin_api)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def worker(
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Run the stream worker (Faust) in the foreground."""
    from streams.worker import run_worker

    _logging(loglevel)
    run_worker(load_settings(), loglevel=loglevel)


@app.command()
def topics() -> None:
    """Create the declared topics (with their dead-letter twins) and check their layout."""
    from streams.topics import ensure_topics, topic_layout

    settings = load_settings()
    ensure_topics(settings.kafka.bootstrap_servers, settings.kafka.partitions)
    for name, (partitions, compacted) in sorted(topic_layout(settings.kafka.partitions).items()):
        typer.echo(f"{name:28} partitions={partitions}{' compacted' if compacted else ''}")


@app.command("replay")
def replay_command(
    cohort: Annotated[Path, typer.Argument(help="Cohort folder (from `ctriage cohort generate`).")],
    speed: Annotated[float, typer.Option(help="Clinical seconds per wall second.")] = 3600.0,
) -> None:
    """Publish a cohort's FHIR resources and CT events into Kafka in accelerated time."""
    from streams.sources.replay import replay
    from triage.fhir.pseudonym import Pseudonymiser

    settings = load_settings()
    report = replay(
        cohort,
        settings.kafka.bootstrap_servers,
        Pseudonymiser(
            settings.pseudonym.key.get_secret_value().encode(), settings.pseudonym.key_version
        ),
        speed,
        settings.run_dir / "quarantine",
    )
    typer.echo(
        f"published {report.studies} CT studies and {report.fhir_resources} FHIR resources "
        f"({report.rejected} bundles rejected at ingress)"
    )


def _publisher(settings: Settings) -> StudyPublisher:
    from streams.sources.publish import StudyPublisher
    from triage.fhir.pseudonym import Pseudonymiser

    return StudyPublisher(
        settings.kafka.bootstrap_servers,
        Pseudonymiser(
            settings.pseudonym.key.get_secret_value().encode(), settings.pseudonym.key_version
        ),
        settings.worker.hospital,
    )


@app.command("ingest")
def ingest_command(
    path: Annotated[Path, typer.Argument(help="Folder of DICOM files, or a DICOMDIR.")],
) -> None:
    """Store the DICOM studies under PATH and publish one ct.studies event per study."""
    from streams.sources.folder import ingest_folder
    from streams.sources.study_store import StudyStore

    settings = load_settings()
    publisher = _publisher(settings)
    try:
        report = ingest_folder(path, StudyStore(settings.ingest.study_store), publisher)
    finally:
        publisher.close()
    for event in report.events:
        typer.echo(f"published  {event.study_uid}  {event.study_uri}")
    for letter in report.rejections:
        typer.echo(f"rejected   {letter.reason_code}  {letter.source_topic}: {letter.error}")
    typer.echo(
        f"{report.instances} DICOM instances in {len(report.events)} studies, "
        f"{report.not_dicom} files not DICOM, {len(report.rejections)} rejected"
    )
    if report.rejections and not report.events:
        raise typer.Exit(1)


@app.command("receive")
def receive_command(
    stability_s: Annotated[
        float | None, typer.Option(help="Seconds without a new instance before a study is sent.")
    ] = None,
) -> None:
    """Run the DICOM C-STORE receiver and publish each stable study (Ctrl-C stops)."""
    import signal
    import threading

    from streams.sources.dicom_receiver import DicomReceiver
    from streams.sources.study_store import StudyStore

    _logging("info")
    settings = load_settings()
    publisher = _publisher(settings)
    receiver = DicomReceiver(
        StudyStore(settings.ingest.study_store),
        on_stable=lambda study: publisher.publish(study.arrival, "dicom-cstore"),
        on_rejected=publisher.reject,
        ae_title=settings.ingest.ae_title,
        host=settings.ingest.host,
        port=settings.ingest.port,
        stability_s=settings.ingest.stability_s if stability_s is None else stability_s,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    receiver.start()
    typer.echo(f"receiving as {settings.ingest.ae_title} on port {settings.ingest.port}")
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
        publisher.close()


@app.command("poll-dicomweb")
def poll_dicomweb_command(
    url: Annotated[
        str | None, typer.Option(help="DICOMweb root (QIDO-RS/WADO-RS), e.g. Orthanc's /dicom-web.")
    ] = None,
    interval_s: Annotated[float | None, typer.Option(help="Seconds between searches.")] = None,
    once: Annotated[bool, typer.Option(help="Search once, publish what is stable, exit.")] = False,
) -> None:
    """Poll a PACS over DICOMweb and publish each new stable CT study (Ctrl-C stops)."""
    import threading

    from streams.sources.dicomweb import DicomwebPoller
    from streams.sources.publish import StudyArrival
    from streams.sources.study_store import StudyStore

    _logging("info")
    settings = load_settings()
    publisher = _publisher(settings)

    def announce(arrival: StudyArrival) -> None:
        publisher.publish(arrival, "dicomweb")

    poller = DicomwebPoller(
        url or settings.ingest.dicomweb_url,
        StudyStore(settings.ingest.study_store),
        on_study=announce,
        on_rejected=publisher.reject,
        stability_s=0.0 if once else settings.ingest.stability_s,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if once:
            arrivals = poller.poll_once()
            typer.echo(f"{len(arrivals)} studies published")
        else:
            typer.echo(f"polling {poller.client.base_url}")
            poller.run(interval_s or settings.ingest.poll_interval_s, stop.is_set)
    except KeyboardInterrupt:
        pass
    finally:
        publisher.close()


@app.command("ingest-fhir")
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
    from triage.fhir.pseudonym import Pseudonymiser

    settings = load_settings()
    sink: FhirSink = (
        CollectingSink() if dry_run else KafkaFhirSink(settings.kafka.bootstrap_servers)
    )
    key = settings.pseudonym.key.get_secret_value().encode()
    ingress = FhirIngress(
        Pseudonymiser(key, settings.pseudonym.key_version),
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


@app.command("fhir-endpoint")
def fhir_endpoint_command(
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "info",
) -> None:
    """Serve the FHIR REST ingress (POST /fhir, OpenAPI at /openapi.json) until Ctrl-C."""
    from aiohttp import web

    from streams.sources.fhir_http import build_app
    from streams.sources.fhir_ingest import KafkaFhirSink
    from triage.fhir.pseudonym import Pseudonymiser

    _logging(loglevel)
    settings = load_settings()
    sink = KafkaFhirSink(settings.kafka.bootstrap_servers)
    key = settings.pseudonym.key.get_secret_value().encode()
    http = build_app(
        Pseudonymiser(key, settings.pseudonym.key_version),
        settings.worker.hospital,
        sink,
        quarantine_dir=settings.run_dir / "quarantine",
    )
    try:
        web.run_app(http, host=settings.fhir.http_host, port=settings.fhir.http_port)
    finally:
        sink.close()


@app.command()
def demo(
    patients: Annotated[int, typer.Option(help="Synthetic patients to replay.")] = 30,
    seed: Annotated[int, typer.Option(help="Cohort seed.")] = 7,
    speed: Annotated[float, typer.Option(help="Clinical seconds per wall second.")] = 3600.0,
    matrix: Annotated[int, typer.Option(help="CT phantom matrix (pixels per side).")] = 128,
    slices: Annotated[int, typer.Option(help="CT phantom slices.")] = 64,
    timeout_s: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 900.0,
    keep_services: Annotated[bool, typer.Option(help="Leave Kafka and Triton running.")] = False,
    lesion_model: Annotated[
        str,
        typer.Option(
            help="lesion_threshold (default here: it measures the phantoms' HU-range lesions "
            "by construction) or lesion_unet (the worker's default, trained on real CT; it "
            "under-reads the phantoms)."
        ),
    ] = "lesion_threshold",
) -> None:
    """Start Kafka + Triton + the worker, replay a synthetic cohort, show alerts and forecasts."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from inference.client import THRESHOLD_MODEL, UNET_MODEL
    from streams import demo as d
    from streams import screen
    from streams.summary import latency_summary, simulated_ventilation, synthetic_match

    if lesion_model not in (THRESHOLD_MODEL, UNET_MODEL):
        typer.echo(f"error: --lesion-model is {THRESHOLD_MODEL} or {UNET_MODEL}", err=True)
        raise typer.Exit(code=2)
    _logging("warning")
    _interrupt_on_signals()
    console = screen.make_console()
    options = d.DemoOptions(patients, seed, speed, matrix, slices, timeout_s)
    settings = d.demo_settings(load_settings(), lesion_model)
    services = None
    worker_process = d.WorkerProcess(settings)
    peak_rss: dict[str, float] = {}
    try:
        with console.status(
            "Starting Kafka, Triton, PostgreSQL and Prometheus "
            "(the first run resolves Kafka with Maven)..."
        ):
            services = d.start_services(settings)
        console.print(
            "[green]✓[/] Kafka, Triton, PostgreSQL (store) and Prometheus "
            f"({services.prometheus.url}) are up"
        )
        with console.status(f"Generating a synthetic cohort of {patients} patients..."):
            cohort_dir = d.cohort_for(settings, options)
        console.print(f"[green]✓[/] synthetic cohort in {cohort_dir}")
        with console.status("Starting the stream worker..."):
            worker_process.start()
        console.print(
            f"[green]✓[/] worker joined its consumer group (lesion model {lesion_model}); "
            "replaying\n"
        )
        processes = {"worker": worker_process.process.pid if worker_process.process else None}
        processes.update({s.name.value: s.pid for s in services.status()})

        with Progress(
            TextColumn("[bold]replay[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("studies scored or rejected"),
            console=console,
        ) as progress:
            task = progress.add_task("replay", total=patients)

            def watch(collector: d.OutputCollector) -> None:
                collector.on_alert = lambda a: progress.console.print(screen.alert_line(a))
                collector.on_dead_letter = lambda x: progress.console.print(
                    screen.dead_letter_line(x)
                )

            def on_poll(outcome: d.ReplayOutcome, report: object) -> None:
                done = len(set(outcome.risks) | outcome.rejected_studies())
                progress.update(task, completed=done)
                _sample_rss(processes, peak_rss)

            report, collector, elapsed_s = d.run_pipeline(
                settings, cohort_dir, options, watch=watch, on_poll=on_poll
            )
        outcome = collector.outcome
        collector.close()
        console.print()
        console.print(
            screen.summary_table(
                studies=report.studies,
                scored=len(outcome.risks),
                rejected=len(outcome.rejected_studies()),
                alerts=len(outcome.alerts),
                elapsed_s=elapsed_s,
                latency=latency_summary(list(outcome.risks.values())),
                peak_rss_mb=peak_rss,
            )
        )
        if outcome.forecast is not None:
            console.print(screen.forecast_table(outcome.forecast))
            ventilators = screen.ventilator_table(outcome.forecast)
            console.print(
                ventilators
                if ventilators is not None
                else "[dim]no ventilator forecast: the unit's ventilator count is unknown[/]"
            )
        match = synthetic_match(outcome, simulated_ventilation(cohort_dir))
        console.print(screen.synthetic_table(match))
        console.print(screen.monitoring_line(d.monitoring_snapshot(services.prometheus)))
    except d.DemoError as e:
        console.print(f"[red]demo failed:[/] {e}")
        raise typer.Exit(1) from e
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; stopping services[/]")
        raise typer.Exit(130) from None
    finally:
        # an interrupted replay's producer thread may still be connected: its reconnect errors
        # while the broker stops are expected, not news
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        worker_process.stop()
        if services is not None and not keep_services:
            services.down()
            console.print("[green]✓[/] worker, Kafka, Triton, PostgreSQL and Prometheus stopped")


def _interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM both end the demo through its clean-up path (services stopped).

    A shell that starts a job in the background makes it ignore SIGINT; the demo wants it back.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def _sample_rss(processes: dict[str, int | None], peak: dict[str, float]) -> None:
    for name, pid in processes.items():
        if pid is None:
            continue
        try:
            process = psutil.Process(pid)
            # Triton's Python-backend models run in stub child processes: count them too.
            family = [process, *process.children(recursive=True)]
            rss = sum(p.memory_info().rss for p in family) / 2**20
        except psutil.Error:
            continue
        peak[name] = max(peak.get(name, 0.0), rss)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
