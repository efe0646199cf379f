"""Run the ctriage stream worker: create topics, expose metrics, start the Faust app."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
import sys

import faust
from prometheus_client import start_http_server

from dashboards import create_schema, make_engine
from inference import SandboxedReader, TritonQuantifier
from streams.app import build_app
from streams.kafka_security import KafkaSecurity
from streams.log_limits import limit_kafka_client_logs
from streams.metrics import REGISTRY
from streams.pipeline import Dependencies, Pipeline
from streams.settings import Settings
from streams.topics import ensure_topics
from triage.alerts import AlertPolicy
from triage.risk import RiskModel

logger = logging.getLogger(__name__)


def series_reader(settings: Settings) -> SandboxedReader:
    """The worker's sandboxed DICOM reader, with the settings' memory and time limits."""
    worker = settings.worker
    return SandboxedReader(
        memory_limit_mb=worker.reader_memory_limit_mb, timeout_s=worker.reader_timeout_s
    )


def build_dependencies(settings: Settings, reader: SandboxedReader | None = None) -> Dependencies:
    """Connect the real services and load the models named in ``settings``.

    ``reader``: the sandboxed DICOM reader to use (one is made from the settings otherwise).
    """
    worker = settings.worker
    if reader is None:
        reader = series_reader(settings)
    engine = make_engine(settings.store.url)
    create_schema(engine)
    return Dependencies(
        quantifier=TritonQuantifier(
            settings.triton.http_url,
            model_name=settings.triton.model_name,
            timeout_s=settings.triton.timeout_s,
        ),
        risk_model=RiskModel.load(worker.risk_model_path),
        store=engine,
        default_policy=AlertPolicy.single(worker.alert_threshold, worker.threshold_version),
        hospital_capacity_beds={worker.hospital: worker.icu_capacity_beds},
        default_capacity_beds=worker.icu_capacity_beds,
        read_series=reader.load_series,
    )


def prepare(settings: Settings, reader: SandboxedReader | None = None) -> Pipeline:
    """Check the topic layout and build the app (everything but running it)."""
    kafka = settings.kafka
    ensure_topics(
        kafka.bootstrap_servers,
        kafka.partitions,
        app_id=settings.worker.app_id,
        replication=kafka.replication,
        min_insync=kafka.min_insync,
        security=KafkaSecurity.from_settings(kafka),
        session_timeout_s=settings.worker.session_timeout_s,
    )
    settings.worker.own_data_dir.mkdir(parents=True, exist_ok=True)
    return build_app(settings, build_dependencies(settings, reader))


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run the worker in the foreground until interrupted."""
    worker = settings.worker
    reader = series_reader(settings)
    # the reader's child starts while Kafka, the tables and the models come up (before the
    # clients' threads exist, which the forkserver prefers)
    reader.start()
    pipeline = prepare(settings, reader)
    # `kill -QUIT <pid>`: every thread's stack to the log, even with the event loop blocked, and
    # the worker runs on (SIGUSR1 lists the event loop's tasks; SIGUSR2 is mode's debugger)
    faulthandler.register(signal.SIGQUIT, all_threads=True)
    start_http_server(worker.own_metrics_port, addr=worker.bind_host, registry=REGISTRY)
    logger.info("metrics on http://%s:%d/metrics", worker.bind_host, worker.own_metrics_port)
    OutageQuietWorker(pipeline.app, loglevel=loglevel, quiet=True).execute_from_commandline()


class OutageQuietWorker(faust.Worker):
    """Faust's worker: a broker outage's repeated client lines held back, a safe task list.

    Its log handlers hold back the Kafka clients' repeated lines; SIGUSR1 cannot crash it.
    """

    async def _cry(self) -> None:
        """SIGUSR1: every task of the event loop with its stack, without local variables.

        mode's own dump also prints every frame's locals, and one ``repr`` raising (aiokafka's
        ``FetchResult`` once its records were handed out) crashed the worker (seen 2026-12-05).
        """
        out = sys.stderr  # the worker log (the launcher sends stderr there)
        for task in asyncio.all_tasks():
            print(f"Stack for {task!r}:", file=out)
            task.print_stack(file=out)
        out.flush()

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """Faust has just replaced the root's handlers: limit the Kafka clients' on each."""
        super().on_setup_root_logger(logger, level)
        limit_kafka_client_logs(logger.handlers)


def main() -> None:
    """Entry point of ``python -m streams.worker`` (what the demo and tests launch)."""
    from streams.settings import load_settings

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run_worker(load_settings())


if __name__ == "__main__":
    main()
