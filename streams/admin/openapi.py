"""OpenAPI 3.1 description of the threshold administration API (served at ``/openapi.json``).

The hospital path parameter is an enum of the hospitals this server administers, so a client
generated from the spec (or a schemathesis run) only names real ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from triage.alerts import NAMED_LEVELS, WORSENING_SETTINGS

_PROBABILITY = {"type": "number", "minimum": 0, "maximum": 1}
_ERROR_CODES = [
    "unauthenticated",
    "forbidden",
    "unknown_hospital",
    "not_found",
    "method_not_allowed",
    "invalid_json",
    "invalid_body",
    "invalid_change",
    "invalid_query",
    "threshold_out_of_range",
    "levels_not_ordered",
    "unknown_level",
    "missing_level",
    "empty_reason",
    "empty_user",
    "empty_version",
    "version_conflict",
    "invalid_calibration",
    "calibration_model_mismatch",
    "kafka_unavailable",
    "missing_card",
    "invalid_card",
    "missing_file",
    "feature_mismatch",
    "unreadable_model",
    "version_mismatch",
    "request_entity_too_large",
]


def _levels_schema(required: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {str(level): _PROBABILITY for level in NAMED_LEVELS},
        "additionalProperties": False,
    }
    if required:
        schema["required"] = [str(level) for level in NAMED_LEVELS]
    return schema


def _json(schema_name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Body or query not readable",
        401: "No token, or an unknown one",
        403: "The token's role may not do this",
        404: "Hospital not administered here",
        409: "expected_version is not the version in force",
        422: "Refused value (reason code in `error`)",
        503: "Kafka or the model card unavailable",
    }
    return {str(c): {"description": text[c], "content": _json("Error")} for c in codes}


def openapi_spec(hospitals: Sequence[str]) -> dict[str, Any]:
    """The OpenAPI document; ``hospitals`` become the enum of the hospital parameter."""
    hospital = {
        "name": "hospital",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": list(hospitals)},
    }
    secured: list[dict[str, list[str]]] = [{"bearerAuth": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ctriage threshold administration",
            "version": "1",
            "description": "Alert policies (named probability levels moderate < high < "
            "critical, alerting from one of them) per hospital, the model's operating points "
            "and the audit trail of changes. Roles: viewer (GET), threshold-admin (GET and "
            "POST changes). A change is published to triage.config and applied by every "
            "worker to its next score.",
        },
        "paths": {
            "/health": {
                "get": {
                    "summary": "Liveness",
                    "security": [],
                    "responses": {"200": {"description": "Up", "content": _json("Health")}},
                }
            },
            "/v1/policies": {
                "get": {
                    "summary": "Policies in force",
                    "security": secured,
                    "responses": {
                        "200": {"description": "Every hospital's", "content": _json("Policies")},
                        **_errors(401),
                    },
                }
            },
            "/v1/policies/{hospital}": {
                "get": {
                    "summary": "One hospital's policy in force",
                    "security": secured,
                    "parameters": [hospital],
                    "responses": {
                        "200": {"description": "The policy", "content": _json("Policy")},
                        **_errors(401, 404),
                    },
                }
            },
            "/v1/policies/{hospital}/changes": {
                "post": {
                    "summary": "Change levels (threshold-admin)",
                    "security": secured,
                    "parameters": [hospital],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ChangeRequest"},
                                "examples": {
                                    "lower-high": {
                                        "summary": "Alert earlier during a surge",
                                        "value": {
                                            "levels": {"high": 0.4},
                                            "reason": "winter surge: warn earlier",
                                        },
                                    },
                                    "alert-from-moderate": {
                                        "summary": "Alert from moderate on",
                                        "value": {
                                            "alert_from": "moderate",
                                            "reason": "ICU has free beds: catch more",
                                        },
                                    },
                                },
                            }
                        },
                    },
                    "responses": {
                        "201": {"description": "New version", "content": _json("ChangeResult")},
                        "200": {"description": "Nothing changed", "content": _json("ChangeResult")},
                        **_errors(400, 401, 403, 404, 409, 422, 503),
                    },
                }
            },
            "/v1/policies/{hospital}/audit": {
                "get": {
                    "summary": "Audit trail of one hospital's policy, oldest first",
                    "security": secured,
                    "parameters": [hospital],
                    "responses": {
                        "200": {"description": "Changes", "content": _json("AuditTrail")},
                        **_errors(401, 404),
                    },
                }
            },
            "/v1/operating-points": {
                "get": {
                    "summary": "Operating points of the model in use, alerts per day, levels",
                    "security": secured,
                    "parameters": [
                        {
                            "name": "hospital",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": list(hospitals)},
                        },
                        {
                            "name": "studies_per_day",
                            "in": "query",
                            "required": False,
                            "description": "Study volume (default: the store's last 7 days)",
                            "schema": {"type": "number", "minimum": 0, "maximum": 1000000},
                        },
                    ],
                    "responses": {
                        "200": {"description": "Table", "content": _json("OperatingPoints")},
                        **_errors(400, 401, 404, 422, 503),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(),
        },
    }


def _schemas() -> dict[str, Any]:
    nullable_str = {"type": ["string", "null"]}
    worsening = {
        "type": ["object", "null"],
        "description": "worsening rule thresholds (null: the worker's configured rule)",
        "additionalProperties": False,
        "properties": {
            name: {"type": "number", "exclusiveMinimum": 0} for name in WORSENING_SETTINGS
        },
    }
    calibration = {
        "type": ["object", "null"],
        "description": "the hospital's site calibration of the risk model (ctriage risk "
        "recalibrate; null: the model as the workers loaded it). In a change: the "
        "{base_version, site_calibration} of a recalibrated model card, or {} to remove it",
        "properties": {
            "base_version": {"type": "string"},
            "site_calibration": {"type": "object"},
            "model_version": {"type": "string", "description": "read only: <base>+site.<id>"},
        },
    }
    policy = {
        "type": "object",
        "required": ["hospital", "threshold_version", "levels", "alert_from", "source"],
        "properties": {
            "hospital": {"type": "string"},
            "threshold_version": {"type": "string"},
            "levels": _levels_schema(required=True),
            "alert_from": {"type": "string", "enum": [str(lv) for lv in NAMED_LEVELS]},
            "worsening": worsening,
            "calibration": calibration,
            "source": {"type": "string", "enum": ["triage.config", "default"]},
            "changed_by": nullable_str,
            "changed_at": nullable_str,
            "reason": nullable_str,
        },
    }
    stored_policy = {
        "type": ["object", "null"],
        "properties": {
            "levels": _levels_schema(required=True),
            "alert_from": {"type": "string"},
            "threshold_version": {"type": "string"},
        },
    }
    nullable_number = {"type": ["number", "null"]}
    return {
        "Health": {"type": "object", "properties": {"status": {"const": "ok"}}},
        "Error": {
            "type": "object",
            "required": ["error", "detail"],
            "properties": {
                "error": {"type": "string", "enum": _ERROR_CODES},
                "detail": {"type": "string"},
            },
        },
        "Policy": policy,
        "Policies": {
            "type": "object",
            "required": ["policies"],
            "properties": {"policies": {"type": "array", "items": policy}},
        },
        "ChangeRequest": {
            "type": "object",
            "required": ["reason"],
            "additionalProperties": False,
            "properties": {
                "levels": _levels_schema(required=False),
                "alert_from": {
                    "type": ["string", "null"],
                    "enum": [*(str(lv) for lv in NAMED_LEVELS), None],
                },
                "reason": {"type": "string", "minLength": 1, "pattern": "\\S"},
                "expected_version": {"type": ["string", "null"]},
                "worsening": worsening,
                "calibration": calibration,
            },
        },
        "ChangeResult": {
            "type": "object",
            "required": ["changed", "policy", "audit_id"],
            "properties": {
                "changed": {"type": "boolean"},
                "policy": policy,
                "previous_version": {"type": "string"},
                "audit_id": nullable_str,
            },
        },
        "AuditTrail": {
            "type": "object",
            "required": ["records"],
            "properties": {
                "records": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": [
                            "audit_id",
                            "changed_by",
                            "role",
                            "changed_at",
                            "new_version",
                            "reason",
                            "audit_event",
                        ],
                        "properties": {
                            "audit_id": {"type": "string"},
                            "hospital": {"type": "string"},
                            "changed_by": {"type": "string"},
                            "role": {"type": "string"},
                            "source": {"type": "string"},
                            "changed_at": {"type": "string"},
                            "old_version": nullable_str,
                            "new_version": {"type": "string"},
                            "old_policy": stored_policy,
                            "new_policy": stored_policy,
                            "reason": {"type": "string"},
                            "audit_event": {
                                "type": "object",
                                "required": ["resourceType"],
                                "properties": {"resourceType": {"const": "AuditEvent"}},
                            },
                        },
                    },
                }
            },
        },
        "OperatingPoints": {
            "type": "object",
            "required": ["model_version", "rows", "studies_per_day", "volume_source"],
            "properties": {
                "model": {"type": "string"},
                "model_version": {"type": "string"},
                "target": {"type": "string"},
                "label": {"type": "string"},
                "hospital": {"type": "string"},
                "studies_per_day": nullable_number,
                "volume_source": {"type": "string"},
                "rows": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["threshold", "alerts_per_100", "alerts_per_day", "levels"],
                        "properties": {
                            "threshold": {"type": "number"},
                            "sensitivity": nullable_number,
                            "specificity": nullable_number,
                            "ppv": nullable_number,
                            "alerts_per_100": {"type": "number"},
                            "alerts_per_day": nullable_number,
                            "levels": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                },
            },
        },
    }
