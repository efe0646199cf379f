"""Start, stop and inspect the local services together: Kafka, Triton, PostgreSQL, Prometheus.

Each service keeps its files in its own folder under ``run_dir`` (``kafka/``, ``triton/``,
``postgres/``, ``prometheus/``), so a later process (``ctriage services status|down``) finds them
again through the pid files. Orthanc (the PACS) is the hospital's, not ours: tests start it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from deploy.kafka import HOST, KafkaBroker, ReadyProbe
from deploy.kafka_cluster import KafkaCluster
from deploy.kafka_security import BrokerSecurity
from deploy.postgres import PostgresServer
from deploy.process import LocalService, port_is_open, rss_mb
from deploy.prometheus import PrometheusServer
from deploy.triton import TritonServer

logger = logging.getLogger(__name__)


class ServiceNameValues(StrEnum):
    """The services this module manages, in start order."""

    KAFKA = "kafka"
    TRITON = "triton"
    POSTGRES = "postgres"
    PROMETHEUS = "prometheus"


class ServiceStateValues(StrEnum):
    """What ``status`` can say about a service."""

    RUNNING = "running"  # process alive and health check passes
    UNHEALTHY = "unhealthy"  # process alive, health check fails (starting, or stuck)
    STOPPED = "stopped"  # no live process of ours
    PORT_BUSY = "port busy"  # none of ours, but another process holds the port: up would fail


@dataclass(frozen=True)
class ServiceStatus:
    """A snapshot of one local service."""

    name: ServiceNameValues
    state: ServiceStateValues
    endpoint: str
    pid: int | None
    rss_mb: float | None
    run_dir: Path


class LocalServices:
    """The local services, configured by explicit arguments."""

    def __init__(
        self,
        run_dir: Path,
        cache_dir: Path,
        model_repository: Path,
        kafka_port: int = 19092,
        kafka_controller_port: int = 19093,
        kafka_heap_mb: int = 768,
        kafka_partitions: int = 4,
        triton_http_port: int = 18000,
        triton_grpc_port: int = 18001,
        triton_metrics_port: int = 18002,
        python_executable: Path | None = None,
        model_config_name: str | None = None,
        triton_extra_args: Sequence[str] = (),
        postgres_port: int = 15432,
        prometheus_port: int = 19090,
        prometheus_targets: Sequence[str] = (),
        scrape_interval_s: float = 5.0,
        kafka_ready_probe: ReadyProbe | None = None,
        kafka_nodes: int = 1,
        kafka_security: BrokerSecurity | None = None,
    ) -> None:
        # one node: the demo's broker, as before; more: a KRaft cluster on loopback
        self.kafka: KafkaBroker | KafkaCluster
        if kafka_nodes == 1:
            self.kafka = KafkaBroker(
                run_dir / "kafka",
                cache_dir,
                port=kafka_port,
                controller_port=kafka_controller_port,
                heap_mb=kafka_heap_mb,
                num_partitions=kafka_partitions,
                ready_probe=kafka_ready_probe,
                security=kafka_security,
            )
        else:
            self.kafka = KafkaCluster(
                run_dir / "kafka",
                cache_dir,
                nodes=kafka_nodes,
                port=kafka_port,
                controller_port=kafka_controller_port,
                heap_mb=kafka_heap_mb,
                num_partitions=kafka_partitions,
                ready_probe=kafka_ready_probe,
                security=kafka_security,
            )
        self.triton = TritonServer(
            run_dir / "triton",
            model_repository,
            http_port=triton_http_port,
            grpc_port=triton_grpc_port,
            metrics_port=triton_metrics_port,
            python_executable=python_executable,
            model_config_name=model_config_name,
            extra_args=triton_extra_args,
        )
        self.postgres = PostgresServer(run_dir / "postgres", port=postgres_port)
        # Triton's own metrics next to the workers': one place for every latency and queue
        self.prometheus = PrometheusServer(
            run_dir / "prometheus",
            targets=[*prometheus_targets, self.triton.metrics_url.split("/")[2]],
            port=prometheus_port,
            scrape_interval_s=scrape_interval_s,
        )
        self._services: dict[ServiceNameValues, LocalService] = {
            ServiceNameValues.KAFKA: self.kafka,
            ServiceNameValues.TRITON: self.triton,
            ServiceNameValues.POSTGRES: self.postgres,
            ServiceNameValues.PROMETHEUS: self.prometheus,
        }

    def up(
        self,
        names: Sequence[ServiceNameValues] = tuple(ServiceNameValues),
        kafka_timeout_s: float = 90,
        triton_timeout_s: float = 120,
    ) -> list[ServiceStatus]:
        """Start the named services that are not already running; they outlive this process.

        Raises the launcher's ``ServiceError`` on the first failure; services started before it
        keep running (``down`` stops them).
        """
        timeouts = {
            ServiceNameValues.KAFKA: kafka_timeout_s,
            ServiceNameValues.TRITON: triton_timeout_s,
        }
        for name in _ordered(names):
            service = self._services[name]
            if service.pid_file.live_process() is not None:
                logger.info("%s already running", name)
                continue
            service.start(timeout_s=timeouts.get(name, 60))
        return self.status(names)

    def down(
        self, names: Sequence[ServiceNameValues] = tuple(ServiceNameValues), timeout_s: float = 30
    ) -> list[ServiceStatus]:
        """Stop the named services in reverse start order (workers may still be draining Kafka)."""
        for name in reversed(_ordered(names)):
            self._services[name].stop(timeout_s=timeout_s)
        return self.status(names)

    def status(
        self, names: Sequence[ServiceNameValues] = tuple(ServiceNameValues)
    ) -> list[ServiceStatus]:
        """One :class:`ServiceStatus` per named service."""
        return [self._status(name) for name in _ordered(names)]

    def _endpoint(self, name: ServiceNameValues) -> tuple[str, str, int]:
        """What users connect to, and the host and port whose owner tells "port busy"."""
        match name:
            case ServiceNameValues.KAFKA:
                return self.kafka.bootstrap_servers, HOST, self.kafka.port
            case ServiceNameValues.TRITON:
                triton = self.triton
                return f"http://{triton.http_url}", triton.host, triton.http_port
            case ServiceNameValues.POSTGRES:
                return self.postgres.url, HOST, self.postgres.port
            case ServiceNameValues.PROMETHEUS:
                return self.prometheus.url, HOST, self.prometheus.port

    def _status(self, name: ServiceNameValues) -> ServiceStatus:
        service = self._services[name]
        endpoint, host, port = self._endpoint(name)
        process = service.pid_file.live_process()
        if process is None:
            busy = port_is_open(host, port)
            state = ServiceStateValues.PORT_BUSY if busy else ServiceStateValues.STOPPED
        elif service.is_healthy():
            state = ServiceStateValues.RUNNING
        else:
            state = ServiceStateValues.UNHEALTHY
        return ServiceStatus(
            name=name,
            state=state,
            endpoint=endpoint,
            pid=process.pid if process is not None else None,
            # Triton runs each model instance in a child stub, PostgreSQL a process per client
            rss_mb=rss_mb(process, include_children=True) if process is not None else None,
            run_dir=service.run_dir,
        )


def _ordered(names: Sequence[ServiceNameValues]) -> list[ServiceNameValues]:
    return [name for name in ServiceNameValues if name in names]
