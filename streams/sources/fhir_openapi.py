"""The OpenAPI 3.1 description of the FHIR ingress endpoint (served at ``GET /openapi.json``)."""

from __future__ import annotations

from typing import Any

FHIR_JSON = "application/fhir+json"

_STATUSES = (
    (200, "Accepted; rejected Bundle entries are listed as error issues"),
    (400, "Unreadable payload: invalid JSON, unsupported fhirVersion, wrong type"),
    (401, "No bearer token, or one this server does not accept (unknown, expired, bad signature)"),
    (403, "The token's scopes do not allow creating every resource type in the payload"),
    (415, "Unsupported media type"),
    (422, "Nothing usable, or a transaction Bundle with a rejected entry"),
    (503, "Kafka did not take the resources in time: send the same payload again later"),
)


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
        for code, text in _STATUSES
    }
    post = {"requestBody": fhir_body, "responses": responses, "security": [{"bearer": []}]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ctriage FHIR ingress",
            "version": "1",
            "description": "Clinical context for CT triage. Resources are validated as FHIR R4 "
            "(or R5 when declared), pseudonymised and published; resources ctriage does not read "
            "are counted as ignored. Every answer is an OperationOutcome. POST needs a bearer "
            "token whose SMART scopes allow creating each resource type sent "
            "(system/Observation.write, system/*.write, v2 system/Observation.c).",
        },
        "paths": _paths(post, responses, outcome),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A shared-secret token of CTRIAGE_FHIR__TOKENS, or a JWT "
                    "signed with a configured HS256 secret or RS256/ES256 key",
                }
            },
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
            },
        },
    }


def _paths(post: dict[str, Any], responses: dict[str, Any], outcome: Any) -> dict[str, Any]:
    """The paths: three POST routes (token needed) and two public GETs."""
    public: dict[str, Any] = {"security": []}
    return {
        "/fhir": {"post": {**post, "summary": "A resource, a Bundle or NDJSON"}},
        "/fhir/{resourceType}": {
            "post": {
                **post,
                "summary": "One resource of the type named in the path",
                "responses": {
                    **responses,
                    "404": {
                        "description": "Not a resource type name (they start upper-case)",
                        "content": {FHIR_JSON: {"schema": outcome}},
                    },
                },
                "parameters": [
                    {
                        "name": "resourceType",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[A-Z][A-Za-z0-9]*$"},
                    }
                ],
            }
        },
        "/fhir/subscription-notification": {
            "post": {**post, "summary": "A FHIR Subscription notification Bundle"}
        },
        "/fhir/metadata": {
            "get": {
                **public,
                "summary": "CapabilityStatement",
                "responses": {"200": {"description": "CapabilityStatement"}},
            }
        },
        "/metrics": {
            "get": {
                **public,
                "summary": "Prometheus metrics (counts only, no clinical data)",
                "responses": {"200": {"description": "Prometheus text format"}},
            }
        },
    }
