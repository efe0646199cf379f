"""Public API of ``deploy``: what other packages import (deep imports stay inside)."""

from deploy.exceptions import ServiceError
from deploy.kafka_cluster import recorded_nodes
from deploy.kafka_security import SUPER_USER, BrokerSecurity
from deploy.postgres import local_store_url
from deploy.prometheus import PrometheusServer
from deploy.services import LocalServices, ServiceNameValues, ServiceStatus

__all__ = [
    "SUPER_USER",
    "BrokerSecurity",
    "LocalServices",
    "PrometheusServer",
    "ServiceError",
    "ServiceNameValues",
    "ServiceStatus",
    "local_store_url",
    "recorded_nodes",
]
