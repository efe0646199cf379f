"""The demo: real Kafka and Triton, a synthetic cohort replayed, alerts and forecasts on screen.

Everything runs for real: a local Kafka broker and Triton server (``deploy``), the stream worker
as its own process (``ctriage worker``), the replay as an ingress producer. The demo only
watches the output topics and draws what an emergency physician and a bed manager would see.

The demo quantifies with the learned ``lesion_unet``, the worker's default, on 256 x 256
phantoms: their CT-like lesions (ground glass with texture and vessels, consolidation with air
bronchograms, noise matched to real series) are read within 14 % of their true volume on average
at that size (docs/imaging-performance.md); ``--lesion-model lesion_threshold`` runs the
transparent HU-window baseline instead.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy import LocalServices, PrometheusServer, local_store_url
from inference import UNET_MODEL
from streams.demo.collector import OutputCollector
from streams.demo.summary import ReplayOutcome
from streams.kafka_security import KafkaSecurity
from streams.services import services_from_settings
from streams.settings import Settings, settings_env
from streams.sources.replay import ReplayReport, replay
from triage.cohort import generate_cohort
from triage.fhir import Pseudonymiser

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoOptions:
    """How big and how fast the demo is."""

    patients: int = 30
    seed: int = 7
    speed: float = 3600.0
    matrix: int = 256  # the learned model reads phantoms within range from 256 (1.4 mm) on
    slices: int = 64
    timeout_s: float = 600.0


class DemoError(RuntimeError):
    """The demo could not run (a service or the worker did not come up)."""


def demo_settings(settings: Settings, lesion_model: str = UNET_MODEL) -> Settings:
    """The demo's own run folder and store (its local PostgreSQL), never another run's state."""
    run_dir = settings.run_dir / "demo"
    return settings.model_copy(
        update={
            "run_dir": run_dir,
            "triton": settings.triton.model_copy(update={"model_name": lesion_model}),
            "store": settings.store.model_copy(
                update={"url": local_store_url(settings.store.local_port)}
            ),
            "worker": settings.worker.model_copy(update={"data_dir": run_dir / "worker"}),
            # an accelerated replay lasts seconds: scrape often enough to see it
            "monitoring": settings.monitoring.model_copy(update={"scrape_interval_s": 1.0}),
        }
    )


def cohort_for(settings: Settings, options: DemoOptions) -> Path:
    """Generate the synthetic cohort once per size and seed; reuse it afterwards."""
    name = f"n{options.patients}-s{options.seed}-{options.matrix}x{options.slices}"
    cohort_dir = settings.run_dir / "cohorts" / name
    if not (cohort_dir / "manifest.json").exists():
        shutil.rmtree(cohort_dir, ignore_errors=True)
        generate_cohort(
            cohort_dir,
            n_patients=options.patients,
            seed=options.seed,
            matrix=options.matrix,
            slices=options.slices,
            hospital=settings.worker.hospital,
        )
    return cohort_dir


def worker_env(settings: Settings) -> dict[str, str]:
    """Environment that gives a worker process exactly the parent's settings."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CTRIAGE_")}
    return {**inherited, **settings_env(settings)}


class WorkerProcess:
    """``ctriage worker`` as a child process, ready once it owns partitions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log_path = settings.run_dir / "worker.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> None:
        """Start the worker and wait until it has joined its consumer group."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.worker"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=worker_env(self.settings),
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DemoError(f"worker exited early; see {self.log_path}")
            if self.assigned_partitions() > 0:
                return
            time.sleep(0.5)
        raise DemoError(f"worker not ready after {timeout_s:.0f}s; see {self.log_path}")

    def assigned_partitions(self) -> int:
        """Partitions the worker owns, read from its Prometheus endpoint (0 if unreachable)."""
        url = f"http://127.0.0.1:{self.settings.worker.own_metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:
                text = response.read().decode()
        except OSError:
            return 0
        for line in text.splitlines():
            if line.startswith("ctriage_assigned_partitions "):
                return int(float(line.split()[1]))
        return 0

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the worker: SIGTERM, then SIGKILL if it does not exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_services(settings: Settings) -> LocalServices:
    """Start fresh local services for the demo (old demo broker and store data are wiped).

    If one fails to start, those already started are stopped before the error goes up.
    """
    services = services_from_settings(settings)
    services.down()  # a demo left running by a killed session is ours to replace
    shutil.rmtree(settings.run_dir / "kafka", ignore_errors=True)
    services.postgres.purge()  # a fresh store: the summary counts this replay only
    try:
        services.up()
    except BaseException:
        services.down()  # they are the demo's: never leave half of them running
        raise
    return services


def run_pipeline(
    settings: Settings,
    cohort_dir: Path,
    options: DemoOptions,
    watch: Callable[[OutputCollector], None] | None = None,
    on_poll: Callable[[ReplayOutcome, ReplayReport | None], None] | None = None,
) -> tuple[ReplayReport, OutputCollector, float]:
    """Replay the cohort and collect outputs until every study is scored or dead-lettered.

    ``watch`` may set the collector's callbacks (alerts as they fire); ``on_poll`` is called
    after every poll (progress, memory sampling).
    """
    security = KafkaSecurity.from_settings(settings.kafka)
    collector = OutputCollector(settings.kafka.bootstrap_servers, security=security)
    if watch is not None:
        watch(collector)
    pseudonymiser = Pseudonymiser(
        key=settings.pseudonym.key.get_secret_value().encode(),
        key_version=settings.pseudonym.key_version,
    )
    reports: list[ReplayReport] = []
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            reports.append(
                replay(
                    cohort_dir,
                    settings.kafka.bootstrap_servers,
                    pseudonymiser,
                    options.speed,
                    settings.run_dir / "quarantine",
                    security=security,
                )
            )
        except BaseException as e:  # surfaced in the main thread below
            errors.append(e)

    started = time.monotonic()
    producer = threading.Thread(target=produce, name="replay", daemon=True)
    producer.start()
    deadline = started + options.timeout_s
    try:
        while time.monotonic() < deadline:
            collector.poll(0.5)
            if on_poll is not None:
                on_poll(collector.outcome, reports[0] if reports else None)
            if errors:
                raise DemoError(f"replay failed: {errors[0]}") from errors[0]
            if reports and _all_accounted(collector.outcome, reports[0]):
                break
        elapsed_s = time.monotonic() - started  # every study scored or rejected
        producer.join(timeout=5)
        # the alerts, worsening alerts and forecasts sent after a study's risk record
        collector.drain()
    except BaseException:
        collector.close()
        raise
    if not reports:
        raise DemoError(f"replay did not finish within {options.timeout_s:.0f}s")
    return reports[0], collector, elapsed_s


def _all_accounted(outcome: ReplayOutcome, report: ReplayReport) -> bool:
    done = set(outcome.risks) | outcome.rejected_studies()
    return all(uid in done for uid in report.study_uids)


@dataclass(frozen=True)
class MonitoringSnapshot:
    """What Prometheus saw of the replay: the worker's counters and the alerts firing."""

    url: str
    messages: float | None
    dead_letters: float | None
    firing: tuple[str, ...]


def monitoring_snapshot(prometheus: PrometheusServer) -> MonitoringSnapshot:
    """Ask the demo's Prometheus for totals and firing alerts (``None`` where it has no data)."""

    def total(metric: str) -> float | None:
        try:
            result = prometheus.query(f"sum({metric})")
        except (OSError, ValueError):
            return None
        return float(result[0]["value"][1]) if result else None

    try:
        firing = tuple(sorted(prometheus.firing_alerts()))
    except (OSError, ValueError):
        firing = ()
    return MonitoringSnapshot(
        url=prometheus.url,
        messages=total("ctriage_messages_total"),
        dead_letters=total("ctriage_dead_letters_total"),
        firing=firing,
    )
