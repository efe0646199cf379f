"""Push dashboards to Grafana over its HTTP API (``POST /api/dashboards/db``) with grafana-client.

Dashboards are upserted by uid: pushing the same model twice leaves one dashboard, at a new
version. Every failure becomes a :class:`~dashboards.exceptions.DashboardPushError` with a reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaTimeoutError,
    GrafanaUnauthorizedError,
)

from dashboards.exceptions import DashboardPushError, PushFailureReason

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0

_CLIENT_ERROR_REASONS = {
    401: PushFailureReason.UNAUTHORIZED,
    403: PushFailureReason.FORBIDDEN,
    404: PushFailureReason.NOT_FOUND,
    412: PushFailureReason.PRECONDITION_FAILED,
}


@dataclass(frozen=True)
class PushedDashboard:
    """What Grafana answered for a stored dashboard."""

    uid: str
    version: int | None
    url: str | None


def push_dashboard(
    url: str,
    token: str,
    model: dict[str, Any],
    folder_uid: str | None = None,
    overwrite: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> PushedDashboard:
    """Create or replace the dashboard ``model`` (keyed by its uid) in the Grafana at ``url``.

    ``token`` is a service-account token (sent as a bearer token, never logged). Raises
    :class:`DashboardPushError` when Grafana does not store it.
    """
    uid = model.get("uid")
    if not isinstance(uid, str) or not uid:
        raise DashboardPushError(
            str(uid), url, PushFailureReason.INVALID_MODEL, "the model has no uid to upsert by"
        )
    # id null + uid: Grafana updates the dashboard with that uid, or creates it.
    payload: dict[str, Any] = {"dashboard": {**model, "id": None}, "overwrite": overwrite}
    if folder_uid is not None:
        payload["folderUid"] = folder_uid
    api = GrafanaApi.from_url(_with_trailing_slash(url), credential=token, timeout=timeout_s)
    try:
        answer = api.dashboard.update_dashboard(payload)
    except GrafanaTimeoutError as e:
        raise DashboardPushError(
            uid, url, PushFailureReason.TIMEOUT, f"no answer within {timeout_s} s"
        ) from e
    except GrafanaUnauthorizedError as e:
        raise DashboardPushError(
            uid, url, PushFailureReason.UNAUTHORIZED, _message(e), e.status_code
        ) from e
    except GrafanaClientError as e:
        reason = _CLIENT_ERROR_REASONS.get(e.status_code, PushFailureReason.BAD_REQUEST)
        raise DashboardPushError(uid, url, reason, _message(e), e.status_code) from e
    except GrafanaServerError as e:
        raise DashboardPushError(
            uid, url, PushFailureReason.SERVER_ERROR, _message(e), e.status_code
        ) from e
    except (GrafanaException, niquests.exceptions.RequestException) as e:
        raise DashboardPushError(uid, url, PushFailureReason.UNREACHABLE, str(e)) from e
    finally:
        # GrafanaApi has no close(); release its HTTP session's sockets ourselves.
        api.client.s.close()
    if not isinstance(answer, dict):
        raise DashboardPushError(
            uid, url, PushFailureReason.BAD_REQUEST, f"unexpected answer {answer!r}"
        )
    logger.info("pushed dashboard %s to %s (version %s)", uid, url, answer.get("version"))
    return PushedDashboard(
        uid=str(answer.get("uid", uid)), version=answer.get("version"), url=answer.get("url")
    )


def _with_trailing_slash(url: str) -> str:
    # grafana-client appends "api" to the URL's path as is: ".../grafana" would become
    # ".../grafanaapi", so a sub-path must end with a slash.
    parts = urlsplit(url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit(parts._replace(path=path))


def _message(error: GrafanaException) -> str:
    response = error.response
    if isinstance(response, dict) and response.get("message"):
        return str(response["message"])
    return str(error.message)
