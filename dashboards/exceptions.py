"""Errors raised by :mod:`dashboards`.

Hierarchy::

    DashboardError          base of every dashboards error
    └── DashboardPushError  Grafana did not store a dashboard; ``reason`` (PushFailureReason)
                            says why: refused, unreachable, timed out, or an unusable model
"""

from __future__ import annotations

from enum import StrEnum


class PushFailureReason(StrEnum):
    """Closed list of reasons a push fails; each asks the operator for a different fix."""

    INVALID_MODEL = "invalid_model"  # caught before sending: the model has no uid
    UNAUTHORIZED = "unauthorized"  # 401: wrong or expired token
    FORBIDDEN = "forbidden"  # 403: the token's role cannot write dashboards or that folder
    NOT_FOUND = "not_found"  # 404: no such folder, or the URL is not Grafana's
    PRECONDITION_FAILED = "precondition_failed"  # 412: version or name clash with overwrite off
    BAD_REQUEST = "bad_request"  # 400 and other 4xx: Grafana rejected the model
    SERVER_ERROR = "server_error"  # 5xx
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"  # connection refused, DNS, TLS


class DashboardError(Exception):
    """Base class of every error raised by :mod:`dashboards`."""


class DashboardPushError(DashboardError):
    """Grafana did not store the dashboard; ``status_code`` is 0 when no HTTP response came."""

    def __init__(
        self, uid: str, url: str, reason: PushFailureReason, detail: str, status_code: int = 0
    ) -> None:
        status = f" (HTTP {status_code})" if status_code else ""
        super().__init__(f"dashboard {uid!r} to {url}: {reason.value}{status}: {detail}")
        self.uid = uid
        self.url = url
        self.reason = reason
        self.detail = detail
        self.status_code = status_code
