"""Start, stop and inspect the local Kafka broker and Triton server together.

Each service keeps its files in its own folder under ``run_dir`` (``kafka/``, ``triton/``), so
a later process (``ctriage services status|down``) finds them again through the pid files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from deploy.kafka import HOST, KafkaBroker
from deploy.process import PidFile, port_is_open, rss_mb
from deploy.triton import TritonServer

logger = logging.getLogger(__name__)


class ServiceNameValues(StrEnum):
    """The services this module manages."""

    KAFKA = "kafka"
    TRITON = "triton"


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
    """The local Kafka broker and Triton server, configured by explicit arguments."""

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
    ) -> None:
        self.kafka = KafkaBroker(
            run_dir / "kafka",
            cache_dir,
            port=kafka_port,
            controller_port=kafka_controller_port,
            heap_mb=kafka_heap_mb,
            num_partitions=kafka_partitions,
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

    def _selected(self, names: Sequence[ServiceNameValues]) -> list[KafkaBroker | TritonServer]:
        services: dict[ServiceNameValues, KafkaBroker | TritonServer] = {
            ServiceNameValues.KAFKA: self.kafka,
            ServiceNameValues.TRITON: self.triton,
        }
        return [services[name] for name in names]

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
        for service in self._selected(names):
            if service.pid_file.live_process() is not None:
                logger.info("%s already running", _name(service))
                continue
            if isinstance(service, KafkaBroker):
                service.start(timeout_s=kafka_timeout_s)
            else:
                service.start(timeout_s=triton_timeout_s)
        return self.status(names)

    def down(
        self, names: Sequence[ServiceNameValues] = tuple(ServiceNameValues), timeout_s: float = 30
    ) -> list[ServiceStatus]:
        """Stop the named services (Triton first: workers may still be draining Kafka)."""
        for service in reversed(self._selected(names)):
            service.stop(timeout_s=timeout_s)
        return self.status(names)

    def status(
        self, names: Sequence[ServiceNameValues] = tuple(ServiceNameValues)
    ) -> list[ServiceStatus]:
        """One :class:`ServiceStatus` per named service."""
        return [_status(service) for service in self._selected(names)]


def _name(service: KafkaBroker | TritonServer) -> ServiceNameValues:
    return ServiceNameValues.KAFKA if isinstance(service, KafkaBroker) else ServiceNameValues.TRITON


def _host_port(service: KafkaBroker | TritonServer) -> tuple[str, int]:
    if isinstance(service, KafkaBroker):
        return HOST, service.port
    return service.host, service.http_port


def _status(service: KafkaBroker | TritonServer) -> ServiceStatus:
    pid_file: PidFile = service.pid_file
    process = pid_file.live_process()
    endpoint = (
        service.bootstrap_servers
        if isinstance(service, KafkaBroker)
        else f"http://{service.http_url}"
    )
    if process is None:
        busy = port_is_open(*_host_port(service))
        state = ServiceStateValues.PORT_BUSY if busy else ServiceStateValues.STOPPED
    elif service.is_healthy():
        state = ServiceStateValues.RUNNING
    else:
        state = ServiceStateValues.UNHEALTHY
    return ServiceStatus(
        name=_name(service),
        state=state,
        endpoint=endpoint,
        pid=process.pid if process is not None else None,
        # the Triton Python backend runs each model instance in a child stub process
        rss_mb=rss_mb(process, include_children=True) if process is not None else None,
        run_dir=service.run_dir,
    )
