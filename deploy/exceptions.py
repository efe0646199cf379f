"""Errors raised by the local service launchers.

Hierarchy::

    ServiceError                    base; carries a ``reason`` (ServiceReason) and a ``detail``
    ├── ServiceDependencyMissing    a binary or package the launcher needs is not installed
    ├── ServiceStartError           the service did not come up (port busy, crashed, timed out)
    └── ServiceStopError            the service did not go away after SIGKILL
"""

from __future__ import annotations

from enum import StrEnum


class ServiceReason(StrEnum):
    """Closed list of reasons a launcher gives up."""

    BINARY_MISSING = "binary_missing"
    PACKAGE_MISSING = "package_missing"
    DEPENDENCY_RESOLUTION_FAILED = "dependency_resolution_failed"
    STORAGE_FORMAT_FAILED = "storage_format_failed"
    PORT_IN_USE = "port_in_use"
    ALREADY_RUNNING = "already_running"
    EXITED_EARLY = "exited_early"
    START_TIMEOUT = "start_timeout"
    MODEL_REPOSITORY_MISSING = "model_repository_missing"
    STOP_FAILED = "stop_failed"


class ServiceError(Exception):
    """Base class of every launcher error; ``reason`` says what a caller can do about it."""

    def __init__(self, service: str, reason: ServiceReason, detail: str) -> None:
        super().__init__(f"{service}: {reason.value}: {detail}")
        self.service = service
        self.reason = reason
        self.detail = detail


class ServiceDependencyMissing(ServiceError):
    """A binary (java, mvn) or Python package (nvidia-pytriton) the launcher needs is absent."""


class ServiceStartError(ServiceError):
    """The service could not be started or did not become healthy in time."""


class ServiceStopError(ServiceError):
    """The service process survived SIGTERM and SIGKILL."""
