"""FHIR REST ingress (aiohttp): POST resources, Bundles, Bulk NDJSON and Subscription notifications.

The endpoint is an ingress stage like ``ctriage ingest-fhir``: it validates, pseudonymises and
publishes through :class:`~streams.sources.fhir_ingest.FhirIngress`, and answers every request
with a FHIR OperationOutcome (errors one issue each, plus an information summary of what was
received, used, ignored and rejected). ``GET /openapi.json`` is the OpenAPI 3.1 description,
``GET /metrics`` the Prometheus metrics; both, and ``GET /fhir/metadata``, need no token.

Every POST needs a bearer token (:mod:`streams.sources.fhir_auth`) whose scopes allow creating
each resource type of the payload. Status codes: 200 accepted (a ``batch``/``collection``
Bundle may have some entries rejected: they are listed as error issues); 400 unreadable payload
(invalid JSON, not a resource, unsupported fhirVersion, body type not matching the URL); 401 no
or invalid token; 403 a type the token may not create; 415 unsupported media type; 422 nothing
usable, or a ``transaction`` Bundle with any rejected entry (all or nothing: then none of it is
published); 503 Kafka did not take it in time (send it again).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.metrics import REGISTRY
from streams.sources.fhir_auth import AuthRefused, FhirAuthenticator, FhirClient
from streams.sources.fhir_ingest import CollectingSink, FhirIngress, FhirSink, KafkaUnavailable
from streams.sources.fhir_openapi import FHIR_JSON, openapi_spec
from streams.sources.fhir_report import IngestReport, Rejection, operation_outcome
from streams.sources.quarantine import Quarantine
from streams.sources.refusals import IngressRefusalValues, count_refusal
from triage.exceptions import FhirRejected
from triage.fhir import (
    FhirVersionValues,
    ParsedResource,
    Pseudonymiser,
    declared_version,
    iter_ndjson,
    iter_resources,
    version_from_content_type,
)

__all__ = ["SOURCE", "build_app", "openapi_spec"]

logger = logging.getLogger(__name__)

SOURCE = "fhir-http"
NDJSON_TYPES = frozenset({"application/fhir+ndjson", "application/x-ndjson", "application/ndjson"})
JSON_TYPES = frozenset({FHIR_JSON, "application/json"})
MAX_BODY_BYTES = 64 * 2**20
REFUSAL_SYSTEM = "https://ctriage.invalid/ingress-refusal-reason"
R5_HINT = "send Content-Type: application/fhir+json; fhirVersion=5.0"
RETRY_AFTER_S = 30
_UNREADABLE = frozenset({"invalid_json", "not_a_resource"})
_ISSUE_OF_REFUSAL = {
    IngressRefusalValues.EXPIRED_TOKEN: "expired",
    IngressRefusalValues.INSUFFICIENT_SCOPE: "forbidden",
}
_HTTP_ISSUES = {404: "not-found", 405: "not-supported", 413: "too-costly"}
_INGRESS = web.AppKey("ingress", FhirIngress)
_SINK = web.AppKey("sink", object)
_AUTH = web.AppKey("authenticator", FhirAuthenticator)
_CLIENT = web.RequestKey("fhir_client", FhirClient)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(
    pseudonymiser: Pseudonymiser,
    hospital: str,
    sink: FhirSink,
    authenticator: FhirAuthenticator,
    quarantine: Quarantine | None = None,
) -> web.Application:
    """The aiohttp application; ``sink`` receives what is published (Kafka in production).

    ``authenticator`` decides who may POST; ``quarantine`` keeps the original of each rejected
    payload on the ingress side (it may hold identifiers), and its dead letter names the file.
    """
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_outcomes, _authenticate])
    app[_SINK] = sink
    app[_AUTH] = authenticator
    app[_INGRESS] = FhirIngress(
        pseudonymiser, hospital, CollectingSink(), SOURCE, quarantine, r5_hint=R5_HINT
    )
    app.router.add_post("/fhir", post_payload)
    app.router.add_post("/fhir/subscription-notification", post_payload)
    # resource types start upper-case: /fhir/metadata and the notification path are not types
    app.router.add_post("/fhir/{resource_type:[A-Z][A-Za-z0-9]*}", post_payload)
    app.router.add_get("/fhir/metadata", get_metadata)
    app.router.add_get("/openapi.json", get_openapi)
    app.router.add_get("/metrics", get_metrics)
    return app


@web.middleware
async def _outcomes(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The server's own errors (404, 405, 413) as OperationOutcomes too, Allow header kept."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        response = _issue_response(e.status, _HTTP_ISSUES.get(e.status, "processing"), e.reason)
        for name in ("Allow",):
            if name in e.headers:
                response.headers[name] = e.headers[name]
        return response


@web.middleware
async def _authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every POST needs a valid bearer token (401 otherwise, counted and logged)."""
    if request.method != "POST":
        return await handler(request)
    try:
        request[_CLIENT] = request.app[_AUTH].client(request.headers.get("Authorization"))
    except AuthRefused as e:
        return _refused(e, request.remote or "unknown peer")
    return await handler(request)


async def post_payload(request: web.Request) -> web.Response:
    """Ingest the body: a resource, a Bundle (any type) or NDJSON; answer an OperationOutcome."""
    client = request[_CLIENT]
    media_type = request.content_type
    try:
        version = _version(request)
    except FhirRejected as e:
        return _outcome_response(400, [Rejection("request", None, e.reason.value, e.why)])
    if media_type not in JSON_TYPES | NDJSON_TYPES:
        return _issue_response(415, "not-supported", f"unsupported media type {media_type!r}")
    body = await request.read()
    ndjson = media_type in NDJSON_TYPES
    document = None if ndjson else _json_or_none(body)
    expected_type = request.match_info.get("resource_type")
    if expected_type:
        mismatch = _type_mismatch(document, expected_type)
        if mismatch:
            return _issue_response(400, "invalid", mismatch)
    denied = _scope_refusal(client, _resource_types(body, document, ndjson))
    if denied is not None:
        return _refused(denied, f"{client.name}@{request.remote or 'unknown peer'}")
    loop = asyncio.get_running_loop()
    staged = CollectingSink()
    report = await loop.run_in_executor(
        None, functools.partial(_ingest, request.app[_INGRESS], staged, body, version, ndjson)
    )
    sink: FhirSink = request.app[_SINK]  # type: ignore[assignment]
    atomic = _bundle_type(document) == "transaction"
    publish = not (atomic and report.rejections)
    if not publish:
        report.withheld = report.used
    try:
        await loop.run_in_executor(None, functools.partial(_forward, staged, sink, publish))
    except KafkaUnavailable as e:
        logger.error("FHIR payload not published, the sender is told to retry: %s", e)
        response = _issue_response(503, "transient", f"not published, send it again: {e}")
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
    if report.rejections and (report.used == 0 or not publish):
        status = 400 if all(r.reason in _UNREADABLE for r in report.rejections) else 422
        return _outcome_response(status, report.rejections, report)
    return _outcome_response(200, report.rejections, report)


async def get_metadata(request: web.Request) -> web.Response:
    """A minimal CapabilityStatement: what can be POSTed, and that it needs SMART tokens."""
    smart = "http://terminology.hl7.org/CodeSystem/restful-security-service"
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json", "ndjson"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [{"coding": [{"system": smart, "code": "SMART-on-FHIR"}]}],
                    "description": "Bearer token with system/<type>.write (or .c) scopes",
                },
                "interaction": [{"code": "batch"}, {"code": "transaction"}],
                "resource": [
                    {"type": rtype, "interaction": [{"code": "create"}]}
                    for rtype in ("Patient", "Condition", "Observation", "Encounter")
                ],
            }
        ],
    }
    return web.json_response(statement, content_type=FHIR_JSON)


async def get_openapi(request: web.Request) -> web.Response:
    """The OpenAPI description of this endpoint."""
    return web.json_response(openapi_spec())


async def get_metrics(request: web.Request) -> web.Response:
    """Prometheus metrics of this process (counts by reason and source; no clinical data)."""
    response = web.Response(body=generate_latest(REGISTRY))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def _version(request: web.Request) -> FhirVersionValues:
    explicit = request.query.get("fhirVersion")
    if explicit:
        return declared_version(explicit)
    return version_from_content_type(request.headers.get("Content-Type"))


def _resource_types(body: bytes, document: Any, ndjson: bool) -> set[str]:
    """The resource types a payload would create (what its scopes must cover)."""
    parts = iter_ndjson(body) if ndjson else iter_resources(document, "")
    return {
        str(part.resource["resourceType"])[:64]
        for part in parts
        if isinstance(part, ParsedResource)
    }


def _scope_refusal(client: FhirClient, types: set[str]) -> AuthRefused | None:
    if not client.may_create_any():
        detail = f"client {client.name!r} holds no system/<type>.write (or .c) scope"
        return AuthRefused(IngressRefusalValues.INSUFFICIENT_SCOPE, detail)
    denied = sorted(rtype for rtype in types if not client.may_create(rtype))
    if not denied:
        return None
    listed = ", ".join(denied[:10]) + (f" and {len(denied) - 10} more" if len(denied) > 10 else "")
    detail = (
        f"client {client.name!r} may not create {listed}: needs system/<type>.write "
        "(or system/*.write) for each type sent"
    )
    return AuthRefused(IngressRefusalValues.INSUFFICIENT_SCOPE, detail)


def _ingest(
    ingress: FhirIngress,
    staged: CollectingSink,
    body: bytes,
    version: FhirVersionValues,
    ndjson: bool,
) -> IngestReport:
    one = FhirIngress(
        ingress.pseudonymiser,
        ingress.hospital,
        staged,
        SOURCE,
        ingress.quarantine,
        r5_hint=ingress.r5_hint,
    )
    if ndjson:
        return one.ingest_ndjson(body, version, origin="body")
    return one.ingest_json(body, version, origin="body")


def _forward(staged: CollectingSink, sink: FhirSink, publish: bool) -> None:
    for letter in staged.dead_letters:
        sink.send_dead_letter(letter)
    if publish:
        for event in staged.events:
            sink.send_resource(event)
    flush = getattr(sink, "flush", None)
    if callable(flush):
        flush()


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # the ingress reports it (invalid_json)


def _bundle_type(document: Any) -> str | None:
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        return str(document.get("type"))
    return None


def _type_mismatch(document: Any, expected: str) -> str | None:
    if document is None:
        return None  # reported as invalid_json by the ingress
    actual = document.get("resourceType") if isinstance(document, dict) else None
    if actual != expected:
        return f"body resourceType {str(actual)[:60]!r} does not match the URL ({expected!r})"
    return None


def _refused(refusal: AuthRefused, peer: str) -> web.Response:
    """401/403 as an OperationOutcome with RFC 6750's WWW-Authenticate; counted and logged."""
    count_refusal(SOURCE, refusal.reason, peer, refusal.detail)
    code = _ISSUE_OF_REFUSAL.get(refusal.reason, "login")
    issue = {
        "severity": "error",
        "code": code,
        "details": {
            "coding": [{"system": REFUSAL_SYSTEM, "code": refusal.reason.value}],
            "text": refusal.detail[:1000],
        },
    }
    challenge = 'Bearer realm="ctriage-fhir"'
    if refusal.reason is IngressRefusalValues.INSUFFICIENT_SCOPE:
        challenge += ', error="insufficient_scope"'
    elif refusal.reason is not IngressRefusalValues.MISSING_TOKEN:
        challenge += ', error="invalid_token"'
    return web.json_response(
        {"resourceType": "OperationOutcome", "issue": [issue]},
        status=refusal.status,
        content_type=FHIR_JSON,
        headers={"WWW-Authenticate": challenge},
    )


def _outcome_response(
    status: int, rejections: list[Rejection], report: IngestReport | None = None
) -> web.Response:
    outcome = operation_outcome(rejections, report or IngestReport())
    return web.json_response(outcome, status=status, content_type=FHIR_JSON)


def _issue_response(status: int, code: str, text: str) -> web.Response:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }
    return web.json_response(outcome, status=status, content_type=FHIR_JSON)
