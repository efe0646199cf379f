"""``ctriage worker|topics|replay|ingest|receive|poll-dicomweb``: the worker and the CT ingress.

Plain functions; :mod:`streams.cli.root` registers each as a command of ``ctriage``.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from streams.cli.common import configure_logging, pseudonymiser
from streams.kafka_security import KafkaSecurity
from streams.settings import Settings, load_settings

if TYPE_CHECKING:
    from streams.sources.dicom_receiver import PeerAllowList
    from streams.sources.publish import StudyPublisher


def worker(
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "info",
    index: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Worker number N when several run side by side: ports web_port + N and "
            "metrics_port + N, state in data_dir-N (default: CTRIAGE_WORKER__INDEX, 0).",
        ),
    ] = None,
) -> None:
    """Run the stream worker (Faust) in the foreground."""
    from streams.topics import SessionTimeoutRefused
    from streams.worker import run_worker

    configure_logging(loglevel)
    settings = load_settings()
    if index is not None:
        worker_settings = settings.worker.model_copy(update={"index": index})
        settings = settings.model_copy(update={"worker": worker_settings})
    try:
        run_worker(settings, loglevel=loglevel)
    except SessionTimeoutRefused as e:
        typer.echo(f"worker not started: {e}", err=True)
        raise typer.Exit(2) from e


def topics() -> None:
    """Create the declared topics (with their dead-letter twins) and check their layout."""
    from streams.topics import ensure_topics, topic_layout

    settings = load_settings()
    kafka = settings.kafka
    ensure_topics(
        kafka.bootstrap_servers,
        kafka.partitions,
        replication=kafka.replication,
        min_insync=kafka.min_insync,
        security=KafkaSecurity.from_settings(kafka),
    )
    for name, (partitions, compacted) in sorted(topic_layout(settings.kafka.partitions).items()):
        typer.echo(f"{name:28} partitions={partitions}{' compacted' if compacted else ''}")


def replay_command(
    cohort: Annotated[Path, typer.Argument(help="Cohort folder (from `ctriage cohort generate`).")],
    speed: Annotated[float, typer.Option(help="Clinical seconds per wall second.")] = 3600.0,
) -> None:
    """Publish a cohort's FHIR resources and CT events into Kafka in accelerated time."""
    from streams.sources.replay import replay

    settings = load_settings()
    report = replay(
        cohort,
        settings.kafka.bootstrap_servers,
        pseudonymiser(settings),
        speed,
        settings.run_dir / "quarantine",
        security=KafkaSecurity.from_settings(settings.kafka),
    )
    typer.echo(
        f"published {report.studies} CT studies and {report.fhir_resources} FHIR resources "
        f"({report.rejected} bundles rejected at ingress)"
    )


def _publisher(settings: Settings) -> StudyPublisher:
    from streams.sources.publish import StudyPublisher

    return StudyPublisher(
        settings.kafka.bootstrap_servers,
        pseudonymiser(settings),
        settings.worker.hospital,
        security=KafkaSecurity.from_settings(settings.kafka),
    )


def _allowed_peers(settings: Settings) -> PeerAllowList | None:
    """The C-STORE allow-list of the settings (None: any peer, when explicitly turned off)."""
    import logging

    from streams.sources.dicom_receiver import PeerAllowList

    ingest = settings.ingest
    if not ingest.reject_unknown_sources:
        logging.getLogger(__name__).warning(
            "CTRIAGE_INGEST__REJECT_UNKNOWN_SOURCES is off: any peer that reaches port %d may "
            "send studies",
            ingest.port,
        )
        return None
    try:
        peers = PeerAllowList.of(ingest.calling_ae_titles, ingest.calling_hosts)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="CTRIAGE_INGEST__CALLING_HOSTS") from e
    if not peers.ae_titles:
        logging.getLogger(__name__).warning(
            "no calling AE title allowed (CTRIAGE_INGEST__CALLING_AE_TITLES): every "
            "association is rejected"
        )
    return peers


def _serve_metrics(settings: Settings) -> None:
    """Serve this process's Prometheus metrics when ``CTRIAGE_INGEST__METRICS_PORT`` is set."""
    from prometheus_client import start_http_server

    from streams.metrics import REGISTRY

    port = settings.ingest.metrics_port
    if port is not None:
        start_http_server(port, addr=settings.ingest.host, registry=REGISTRY)


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


def receive_command(
    stability_s: Annotated[
        float | None, typer.Option(help="Seconds without a new instance before a study is sent.")
    ] = None,
) -> None:
    """Run the DICOM C-STORE receiver and publish each stable study (Ctrl-C stops)."""
    import threading

    from streams.sources.dicom_receiver import DicomReceiver
    from streams.sources.study_store import StudyStore

    configure_logging("info")
    settings = load_settings()
    peers = _allowed_peers(settings)
    publisher = _publisher(settings)
    _serve_metrics(settings)
    receiver = DicomReceiver(
        StudyStore(settings.ingest.study_store),
        on_stable=lambda study: publisher.publish(study.arrival, "dicom-cstore"),
        on_rejected=publisher.reject,
        ae_title=settings.ingest.ae_title,
        host=settings.ingest.host,
        port=settings.ingest.port,
        stability_s=settings.ingest.stability_s if stability_s is None else stability_s,
        peers=peers,
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


def poll_dicomweb_command(
    url: Annotated[
        str | None, typer.Option(help="DICOMweb root (QIDO-RS/WADO-RS), e.g. Orthanc's /dicom-web.")
    ] = None,
    interval_s: Annotated[float | None, typer.Option(help="Seconds between searches.")] = None,
    once: Annotated[bool, typer.Option(help="Search once, publish what is stable, exit.")] = False,
) -> None:
    """Poll a PACS over DICOMweb and publish each new stable CT study (Ctrl-C stops)."""
    import threading

    from streams.sources.dicomweb import DicomwebPoller, pacs_session
    from streams.sources.publish import StudyArrival
    from streams.sources.study_store import StudyStore

    configure_logging("info")
    settings = load_settings()
    ingest = settings.ingest
    root = url or ingest.dicomweb_url
    try:
        session = pacs_session(
            root,
            ingest.dicomweb_token,
            ingest.dicomweb_username,
            ingest.dicomweb_password,
            ingest.dicomweb_ca_file,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="CTRIAGE_INGEST__DICOMWEB_*") from e
    publisher = _publisher(settings)
    _serve_metrics(settings)

    def announce(arrival: StudyArrival) -> None:
        publisher.publish(arrival, "dicomweb")

    poller = DicomwebPoller(
        root,
        StudyStore(ingest.study_store),
        on_study=announce,
        on_rejected=publisher.reject,
        stability_s=0.0 if once else ingest.stability_s,
        session=session,
        timeout_s=ingest.dicomweb_timeout_s,
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
