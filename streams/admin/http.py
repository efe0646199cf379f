"""Threshold administration HTTP API (aiohttp), described by ``GET /openapi.json``.

Every ``/v1`` route needs ``Authorization: Bearer <token>`` (401 otherwise). ``viewer`` reads the
policies in force, the model's operating points and the audit trail; ``threshold-admin`` may
also ``POST /v1/policies/{hospital}/changes`` (403 for a viewer). A change is validated by
:func:`triage.thresholds.apply_change` and published to ``triage.config`` + ``triage.audit``;
workers apply it to their next score without a restart.

Status codes of a change: 201 new version; 200 nothing changed (no new version); 400 body not
JSON / not an object; 404 hospital not administered here; 409 ``expected_version`` is not the
version in force; 422 refused value (out of [0, 1], levels out of order, empty reason, unknown
level). Every error body is ``{"error": <reason code>, "detail": <text>}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streams.admin.auth import AdminRoleValues, Principal, TokenBook
from streams.admin.openapi import openapi_spec
from streams.admin.policy_log import PolicyInForce, PolicyLog, PolicyLogError, calibration_view
from streams.admin.volume import StudyVolume, study_volume
from streams.records import ThresholdAudit
from triage.alerts import ThresholdChange, operating_point_rows
from triage.exceptions import ConfigRejected, ConfigRejectionReason, TriageError
from triage.risk import load_card

logger = logging.getLogger(__name__)

SOURCE = "admin-api"
PUBLIC_PATHS = frozenset({"/openapi.json", "/health"})
_LOG = web.AppKey("policy_log", PolicyLog)
_TOKENS = web.AppKey("tokens", TokenBook)
_MODEL = web.AppKey("model_path", Path)
_STORE = web.AppKey("store_url", str)
_PRINCIPAL = "principal"
_STATUS_OF = {
    ConfigRejectionReason.VERSION_CONFLICT: 409,
    ConfigRejectionReason.UNKNOWN_HOSPITAL: 404,
}


class ChangeRequest(BaseModel):
    """Body of ``POST /v1/policies/{hospital}/changes``."""

    model_config = ConfigDict(extra="forbid", strict=True)  # as the OpenAPI schema says

    levels: dict[str, float] = Field(default_factory=dict)
    alert_from: str | None = None
    reason: str
    expected_version: str | None = None
    worsening: dict[str, float] | None = None  # triage.alerts.WORSENING_SETTINGS
    #: {base_version, site_calibration} of a recalibrated card; {} removes the hospital's
    calibration: dict[str, Any] | None = None


def build_app(
    policy_log: PolicyLog, tokens: TokenBook, model_path: Path, store_url: str | None
) -> web.Application:
    """The aiohttp application around a started :class:`PolicyLog`."""
    app = web.Application(middlewares=[_errors, _authenticate], client_max_size=64 * 1024)
    app[_LOG] = policy_log
    app[_TOKENS] = tokens
    app[_MODEL] = model_path
    app[_STORE] = store_url or ""
    app.router.add_get("/openapi.json", get_openapi)
    app.router.add_get("/health", get_health)
    app.router.add_get("/v1/policies", list_policies)
    app.router.add_get("/v1/policies/{hospital}", get_policy)
    app.router.add_post("/v1/policies/{hospital}/changes", post_change)
    app.router.add_get("/v1/policies/{hospital}/audit", get_audit)
    app.router.add_get("/v1/operating-points", get_operating_points)
    return app


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as ``{"error", "detail"}`` JSON, including aiohttp's own (404, 405, 413)."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = e.reason.lower().replace(" ", "_")
        return _error(e.status, code, e.text or e.reason, headers=e.headers)


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    principal = request.app[_TOKENS].principal(request.headers.get("Authorization"))
    if principal is None:
        return _error(
            401,
            "unauthenticated",
            "send Authorization: Bearer <token> with a token known to this server",
            headers={"WWW-Authenticate": 'Bearer realm="ctriage-admin"'},
        )
    request[_PRINCIPAL] = principal
    return await handler(request)


async def get_openapi(request: web.Request) -> web.Response:
    """The OpenAPI description of this API (no token needed)."""
    return web.json_response(openapi_spec(request.app[_LOG].known_hospitals()))


async def get_health(request: web.Request) -> web.Response:
    """Liveness: the API runs and follows ``triage.config``."""
    return web.json_response({"status": "ok"})


async def list_policies(request: web.Request) -> web.Response:
    """The policy in force of every known hospital."""
    log = request.app[_LOG]
    return web.json_response(
        {"policies": [_policy_view(log.in_force(h)) for h in log.known_hospitals()]}
    )


async def get_policy(request: web.Request) -> web.Response:
    """The policy in force of one hospital."""
    log = request.app[_LOG]
    hospital = _known_hospital(request)
    return web.json_response(_policy_view(log.in_force(hospital)))


async def get_audit(request: web.Request) -> web.Response:
    """Every change of one hospital's policy, oldest first."""
    log = request.app[_LOG]
    hospital = _known_hospital(request)
    return web.json_response({"records": [_audit_view(a) for a in log.audit_trail(hospital)]})


async def post_change(request: web.Request) -> web.Response:
    """Apply a change (threshold-admin only)."""
    principal: Principal = request[_PRINCIPAL]
    if not principal.role.may_change():
        return _error(
            403, "forbidden", f"{principal.user} is a {principal.role}: only a threshold-admin "
            "may change a policy"
        )  # fmt: skip
    hospital = _known_hospital(request)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "invalid_json", "the body is not JSON")
    if not isinstance(body, dict):
        return _error(400, "invalid_body", "the body must be a JSON object")
    try:
        wanted = ChangeRequest.model_validate(body)
    except ValidationError as e:
        detail = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        return _error(422, "invalid_change", detail)
    change = ThresholdChange(
        hospital=hospital,
        levels=wanted.levels,
        reason=wanted.reason,
        changed_by=principal.user,
        alert_from=wanted.alert_from,
        expected_version=wanted.expected_version,
        worsening=wanted.worsening,
        calibration=wanted.calibration,
    )
    log = request.app[_LOG]
    try:
        result = await log.change(change, str(principal.role), SOURCE)
    except ConfigRejected as e:
        return _error(_STATUS_OF.get(e.reason, 422), e.reason.value, e.detail)
    except PolicyLogError as e:
        return _error(503, "kafka_unavailable", str(e))
    except TriageError as e:  # the workers' model, which a calibration is checked against
        return _error(503, e.reason.value, e.detail)
    policy = _policy_view(log.in_force(hospital))
    if result is None:
        return web.json_response({"changed": False, "policy": policy, "audit_id": None})
    applied, audit = result
    return web.json_response(
        {
            "changed": True,
            "policy": policy,
            "previous_version": applied.old.threshold_version,
            "audit_id": audit.audit_id,
        },
        status=201,
    )


async def get_operating_points(request: web.Request) -> web.Response:
    """The model card's operating points, expected alerts per day, and the levels in force."""
    log = request.app[_LOG]
    hospital = request.query.get("hospital") or log.known_hospitals()[0]
    if hospital not in log.known_hospitals():
        return _error(404, "unknown_hospital", f"no policy known for {hospital!r}")
    raw_volume = request.query.get("studies_per_day")
    try:
        given = None if raw_volume is None else float(raw_volume)
    except ValueError:
        return _error(400, "invalid_query", "studies_per_day must be a number")
    if given is not None and not (0.0 <= given <= 1e6):
        return _error(422, "invalid_query", "studies_per_day must be in [0, 1000000]")
    try:
        card = await asyncio.to_thread(load_card, request.app[_MODEL])
    except TriageError as e:
        return _error(503, e.reason.value, e.detail)
    volume = await asyncio.to_thread(study_volume, request.app[_STORE] or None, given)
    policy = log.in_force(hospital).policy
    rows = operating_point_rows(card, volume.studies_per_day, policy)
    return web.json_response(_operating_points_view(card, hospital, volume, rows))


def _known_hospital(request: web.Request) -> str:
    hospital = request.match_info["hospital"]
    if hospital not in request.app[_LOG].known_hospitals():
        raise web.HTTPNotFound(text=f"no policy known for {hospital!r}", reason="unknown_hospital")
    return hospital


def _policy_view(found: PolicyInForce) -> dict[str, Any]:
    policy = found.policy.to_dict()
    record = found.record
    return {
        "hospital": found.hospital,
        "threshold_version": policy["threshold_version"],
        "levels": policy["levels"],
        "alert_from": policy["alert_from"],
        "worsening": policy.get("worsening"),
        "calibration": calibration_view(policy.get("calibration")),
        "source": "triage.config" if record is not None else "default",
        "changed_by": record.changed_by if record else None,
        "changed_at": _iso(record.changed_at) if record else None,
        "reason": record.reason if record else None,
    }


def _audit_view(audit: ThresholdAudit) -> dict[str, Any]:
    return {
        "audit_id": audit.audit_id,
        "hospital": audit.hospital,
        "changed_by": audit.changed_by,
        "role": audit.role,
        "source": audit.source,
        "changed_at": _iso(audit.changed_at),
        "old_version": audit.old_version,
        "new_version": audit.new_version,
        "old_policy": audit.old_policy,
        "new_policy": audit.new_policy,
        "reason": audit.reason,
        "audit_event": audit.audit_event,
    }


def _operating_points_view(
    card: dict[str, Any], hospital: str, volume: StudyVolume, rows: list[Any]
) -> dict[str, Any]:
    return {
        "model": str(card.get("name", "")),
        "model_version": str(card.get("version", "")),
        "target": str(card.get("target", "")),
        "label": str(card.get("operating_points_label", "")),
        "hospital": hospital,
        "studies_per_day": volume.studies_per_day,
        "volume_source": volume.source,
        "rows": [row.__dict__ | {"levels": list(row.levels)} for row in rows],
    }


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat()


def _error(status: int, code: str, detail: str, headers: Any = None) -> web.Response:
    return web.json_response(
        {"error": code, "detail": detail}, status=status, headers=_plain_headers(headers)
    )


def _plain_headers(headers: Any) -> dict[str, str] | None:
    if not headers:
        return None
    keep = {"WWW-Authenticate", "Allow"}
    return {k: v for k, v in dict(headers).items() if k in keep} or None


__all__ = ["AdminRoleValues", "build_app"]
