"""The local services (:class:`deploy.services.LocalServices`) configured from ctriage settings.

``deploy`` knows nothing of ``streams``: it takes ports and folders as arguments; this module is
where the settings become those arguments (for ``ctriage services`` and the demo).
"""

from __future__ import annotations

from pathlib import Path

from deploy import LocalServices
from streams.kafka_health import broker_answers
from streams.settings import Settings


def port_of(bootstrap_servers: str) -> int:
    """Port of the first ``host:port`` in a bootstrap list (the local broker listens there)."""
    first = bootstrap_servers.split(",")[0].strip()
    return int(first.rsplit(":", 1)[1])


def services_from_settings(
    settings: Settings, model_repository: Path | None = None, kafka_nodes: int | None = None
) -> LocalServices:
    """Build :class:`LocalServices` from ctriage settings (``kafka_nodes``: overrides the setting).

    The Kafka readiness probe is a metadata round trip (:mod:`streams.kafka_health`): a node
    whose port is open may not serve clients yet.
    """
    return LocalServices(
        run_dir=settings.run_dir,
        cache_dir=settings.cache_dir,
        model_repository=model_repository or settings.triton.model_repository,
        kafka_port=port_of(settings.kafka.bootstrap_servers),
        kafka_controller_port=settings.kafka.controller_port,
        kafka_heap_mb=settings.kafka.heap_mb,
        kafka_partitions=settings.kafka.partitions,
        kafka_nodes=kafka_nodes or settings.kafka.nodes,
        kafka_ready_probe=broker_answers,
        triton_http_port=settings.triton.http_port,
        triton_grpc_port=settings.triton.grpc_port,
        triton_metrics_port=settings.triton.metrics_port,
        postgres_port=settings.store.local_port,
        prometheus_port=settings.monitoring.prometheus_port,
        prometheus_targets=[f"127.0.0.1:{settings.worker.metrics_port}"],
        scrape_interval_s=settings.monitoring.scrape_interval_s,
    )
