"""The local services (:class:`deploy.services.LocalServices`) configured from ctriage settings.

``deploy`` knows nothing of ``streams``: it takes ports and folders as arguments; this module is
where the settings become those arguments (for ``ctriage services`` and the demo).

With ``CTRIAGE_KAFKA__SECURITY_PROTOCOL=SASL_SSL`` the local Kafka is secured
(:mod:`deploy.kafka_security`): the launcher talks to it as the cluster admin and provisions every
service principal of :mod:`streams.kafka_acls` with its password and ACLs.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from pydantic import SecretStr

from deploy import SUPER_USER, BrokerSecurity, LocalServices
from streams.kafka_acls import PRINCIPALS, provision
from streams.kafka_health import broker_answers
from streams.kafka_security import PLAINTEXT, KafkaSecurity, KafkaSecurityError
from streams.settings import KafkaSettings, Settings
from streams.topics import ensure_topics


def port_of(bootstrap_servers: str) -> int:
    """Port of the first ``host:port`` in a bootstrap list (the local broker listens there)."""
    first = bootstrap_servers.split(",")[0].strip()
    return int(first.rsplit(":", 1)[1])


def broker_security(settings: Settings, nodes: int | None = None) -> BrokerSecurity | None:
    """How the local broker is secured (None: PLAINTEXT); its files under ``run_dir/kafka``.

    Its provisioning also creates the topics (as the admin), so that a service that may not
    create them (the admin API, the ingress) can start before the first worker.
    """
    protocol = settings.kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol != "SASL_SSL":
        raise KafkaSecurityError(
            f"the local broker serves PLAINTEXT or SASL_SSL, not CTRIAGE_KAFKA__SECURITY_PROTOCOL"
            f"={protocol}"
        )
    return BrokerSecurity(
        settings.run_dir / "kafka",
        users=PRINCIPALS,
        provision=partial(
            _provision,
            kafka=settings.kafka.model_copy(update={"nodes": nodes or settings.kafka.nodes}),
            app_id=settings.worker.app_id,
        ),
    )


def admin_security(security: BrokerSecurity | None) -> KafkaSecurity:
    """The launcher's own client security: the super user over TLS (PLAINTEXT when unsecured)."""
    if security is None:
        return PLAINTEXT
    return KafkaSecurity(
        protocol="SASL_SSL",
        mechanism="SCRAM-SHA-512",
        username=SUPER_USER,
        password=SecretStr(security.password(SUPER_USER)),
        ca_file=security.ca_file,
    )


def _provision(
    security: BrokerSecurity, bootstrap_servers: str, kafka: KafkaSettings, app_id: str
) -> None:
    admin = admin_security(security)
    provision(bootstrap_servers, admin, security.passwords(), app_id)
    ensure_topics(
        bootstrap_servers,
        kafka.partitions,
        app_id=app_id,
        replication=kafka.replication,
        min_insync=kafka.min_insync,
        security=admin,
    )


def _answers(security: BrokerSecurity | None, bootstrap_servers: str) -> bool:
    return broker_answers(bootstrap_servers, security=admin_security(security))


def services_from_settings(
    settings: Settings, model_repository: Path | None = None, kafka_nodes: int | None = None
) -> LocalServices:
    """Build :class:`LocalServices` from ctriage settings (``kafka_nodes``: overrides the setting).

    The Kafka readiness probe is a metadata round trip (:mod:`streams.kafka_health`): a node
    whose port is open may not serve clients yet.
    """
    security = broker_security(settings, kafka_nodes)
    return LocalServices(
        run_dir=settings.run_dir,
        cache_dir=settings.cache_dir,
        model_repository=model_repository or settings.triton.model_repository,
        kafka_port=port_of(settings.kafka.bootstrap_servers),
        kafka_controller_port=settings.kafka.controller_port,
        kafka_heap_mb=settings.kafka.heap_mb,
        kafka_partitions=settings.kafka.partitions,
        kafka_nodes=kafka_nodes or settings.kafka.nodes,
        kafka_ready_probe=partial(_answers, security),
        kafka_security=security,
        triton_http_port=settings.triton.http_port,
        triton_grpc_port=settings.triton.grpc_port,
        triton_metrics_port=settings.triton.metrics_port,
        postgres_port=settings.store.local_port,
        prometheus_port=settings.monitoring.prometheus_port,
        prometheus_targets=[f"127.0.0.1:{settings.worker.metrics_port}"],
        scrape_interval_s=settings.monitoring.scrape_interval_s,
    )
