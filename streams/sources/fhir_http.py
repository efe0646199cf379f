"""FHIR REST ingress (aiohttp): POST resources, Bundles, Bulk NDJSON and Subscription notifications.

The endpoint is an ingress stage like ``ctriage ingest-fhir``: it validates, pseudonymises and
publishes through :class:`~streams.sources.fhir_ingest.FhirIngress`, and answers every request
with a FHIR OperationOutcome (errors one issue each, plus an information summary of what was
used, ignored and rejected). ``GET /openapi.json`` is the OpenAPI 3.1 description.

Status codes: 200 accepted (a ``batch``/``collection`` Bundle may have some entries rejected:
they are listed as error issues); 400 unreadable payload (invalid JSON, unsupported fhirVersion,
body type not matching the URL); 415 unsupported media type; 422 nothing usable, or a
``transaction`` Bundle with any rejected entry (all or nothing: then none of it is published).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from streams.sources.fhir_ingest import (
    CollectingSink,
    FhirIngress,
    FhirSink,
    IngestReport,
    Rejection,
    operation_outcome,
)
from triage.exceptions import FhirRejected
from triage.fhir.parse import FhirVersionValues, declared_version, version_from_content_type
from triage.fhir.pseudonym import Pseudonymiser

logger = logging.getLogger(__name__)

SOURCE = "fhir-http"
FHIR_JSON = "application/fhir+json"
NDJSON_TYPES = frozenset({"application/fhir+ndjson", "application/x-ndjson", "application/ndjson"})
JSON_TYPES = frozenset({FHIR_JSON, "application/json"})
MAX_BODY_BYTES = 64 * 2**20
_INGRESS = web.AppKey("ingress", FhirIngress)
_SINK = web.AppKey("sink", object)


def build_app(
    pseudonymiser: Pseudonymiser,
    hospital: str,
    sink: FhirSink,
    quarantine_dir: Path | None = None,
) -> web.Application:
    """The aiohttp application; ``sink`` receives what is published (Kafka in production).

    ``quarantine_dir`` keeps the original of each rejected payload on the ingress side (it may
    hold identifiers); its dead letter names the file.
    """
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[_SINK] = sink
    app[_INGRESS] = FhirIngress(
        pseudonymiser, hospital, CollectingSink(), SOURCE, quarantine_dir=quarantine_dir
    )
    app.router.add_post("/fhir", post_payload)
    app.router.add_post("/fhir/subscription-notification", post_payload)
    app.router.add_post("/fhir/{resource_type}", post_payload)
    app.router.add_get("/fhir/metadata", get_metadata)
    app.router.add_get("/openapi.json", get_openapi)
    return app


async def post_payload(request: web.Request) -> web.Response:
    """Ingest the body: a resource, a Bundle (any type) or NDJSON; answer an OperationOutcome."""
    media_type = request.content_type
    try:
        version = _version(request)
    except FhirRejected as e:
        return _outcome_response(400, [Rejection("request", None, e.reason.value, e.why)])
    if media_type not in JSON_TYPES | NDJSON_TYPES:
        return _issue_response(415, "not-supported", f"unsupported media type {media_type!r}")
    body = await request.read()
    expected_type = request.match_info.get("resource_type")
    if expected_type and expected_type != "subscription-notification":
        mismatch = _type_mismatch(body, expected_type)
        if mismatch:
            return _issue_response(400, "invalid", mismatch)
    ndjson = media_type in NDJSON_TYPES
    loop = asyncio.get_running_loop()
    staged = CollectingSink()
    report = await loop.run_in_executor(
        None, functools.partial(_ingest, request.app[_INGRESS], staged, body, version, ndjson)
    )
    sink: FhirSink = request.app[_SINK]  # type: ignore[assignment]
    atomic = not ndjson and _bundle_type(body) == "transaction"
    publish = not (atomic and report.rejections)
    await loop.run_in_executor(None, functools.partial(_forward, staged, sink, publish))
    if report.rejections and (report.used == 0 or not publish):
        status = 400 if all(r.reason == "invalid_json" for r in report.rejections) else 422
        return _outcome_response(status, report.rejections, report)
    return _outcome_response(200, report.rejections, report)


async def get_metadata(request: web.Request) -> web.Response:
    """A minimal CapabilityStatement: what can be POSTed."""
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


def openapi_spec() -> dict[str, Any]:
    """OpenAPI 3.1 description of the FHIR ingress endpoint."""
    outcome = {"$ref": "#/components/schemas/OperationOutcome"}
    fhir_body = {
        "description": "A FHIR resource or Bundle (JSON), or Bulk Data NDJSON. Declare R5 with "
        "the fhirVersion parameter, e.g. application/fhir+json; fhirVersion=5.0",
        "required": True,
        "content": {
            FHIR_JSON: {"schema": {"$ref": "#/components/schemas/Resource"}},
            "application/json": {"schema": {"$ref": "#/components/schemas/Resource"}},
            "application/fhir+ndjson": {"schema": {"type": "string"}},
        },
    }
    responses = {
        str(code): {"description": text, "content": {FHIR_JSON: {"schema": outcome}}}
        for code, text in (
            (200, "Accepted; rejected Bundle entries are listed as error issues"),
            (400, "Unreadable payload: invalid JSON, unsupported fhirVersion, wrong type"),
            (415, "Unsupported media type"),
            (422, "Nothing usable, or a transaction Bundle with a rejected entry"),
        )
    }
    post = {"requestBody": fhir_body, "responses": responses}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ctriage FHIR ingress",
            "version": "1",
            "description": "Clinical context for CT triage. Resources are validated as FHIR R4 "
            "(or R5 when declared), pseudonymised and published; resources ctriage does not read "
            "are counted as ignored. Every answer is an OperationOutcome.",
        },
        "paths": {
            "/fhir": {"post": {**post, "summary": "A resource, a Bundle or NDJSON"}},
            "/fhir/{resourceType}": {
                "post": {
                    **post,
                    "summary": "One resource of the type named in the path",
                    "parameters": [
                        {
                            "name": "resourceType",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                }
            },
            "/fhir/subscription-notification": {
                "post": {**post, "summary": "A FHIR Subscription notification Bundle"}
            },
            "/fhir/metadata": {
                "get": {
                    "summary": "CapabilityStatement",
                    "responses": {"200": {"description": "CapabilityStatement"}},
                }
            },
        },
        "components": {
            "schemas": {
                "Resource": {
                    "type": "object",
                    "required": ["resourceType"],
                    "properties": {"resourceType": {"type": "string"}},
                },
                "OperationOutcome": {
                    "type": "object",
                    "required": ["resourceType", "issue"],
                    "properties": {
                        "resourceType": {"const": "OperationOutcome"},
                        "issue": {"type": "array", "items": {"type": "object"}},
                    },
                },
            }
        },
    }


def _version(request: web.Request) -> FhirVersionValues:
    explicit = request.query.get("fhirVersion")
    if explicit:
        return declared_version(explicit)
    return version_from_content_type(request.headers.get("Content-Type"))


def _ingest(
    ingress: FhirIngress,
    staged: CollectingSink,
    body: bytes,
    version: FhirVersionValues,
    ndjson: bool,
) -> IngestReport:
    one = FhirIngress(
        ingress.pseudonymiser, ingress.hospital, staged, SOURCE, ingress.quarantine_dir
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


def _bundle_type(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        return str(document.get("type"))
    return None


def _type_mismatch(body: bytes, expected: str) -> str | None:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # reported as invalid_json by the ingress
    actual = document.get("resourceType") if isinstance(document, dict) else None
    if actual != expected:
        return f"body resourceType {str(actual)[:60]!r} does not match the URL ({expected!r})"
    return None


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
