"""FHIR payloads in every shape hospitals send -> single resources, validated R4 (or R5).

Shapes: a single resource, a Bundle (``transaction``, ``batch``, ``collection``, ``searchset``,
``history``, ``message``, ``subscription-notification``; nested Bundles are flattened) and Bulk
Data NDJSON (one resource per line). The FHIR version comes from the payload's declaration (the
``fhirVersion`` MIME-type parameter, or the caller's) and defaults to R4, the version hospitals
run; R4 payloads validate with ``fhir.resources.R4B`` (R4B is a superset of R4 for the resources
read here), R5 with ``fhir.resources``' default R5 models. R5 content declared (or defaulted) as
R4 is recognised and rejected with its own reason, not a generic validation error.

Every failure is a :class:`~triage.exceptions.FhirRejected` whose detail never echoes input
values (pydantic errors are reported by location and message only), because a rejected Patient
may still carry names and identifiers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from triage.exceptions import FhirRejected, FhirRejectionReason


class FhirVersionValues(StrEnum):
    """FHIR releases accepted (closed list); the value is the ``fhirVersion`` we store."""

    R4 = "4.0"
    R5 = "5.0"


# fhirVersion MIME parameter values (FHIR R4 http.html#version-parameter) -> our release.
_DECLARED_VERSIONS = {
    "4.0": FhirVersionValues.R4,
    "4.0.0": FhirVersionValues.R4,
    "4.0.1": FhirVersionValues.R4,
    "4.3": FhirVersionValues.R4,
    "4.3.0": FhirVersionValues.R4,
    "5.0": FhirVersionValues.R5,
    "5.0.0": FhirVersionValues.R5,
}
BUNDLE_TYPES = frozenset(
    {
        "transaction",
        "batch",
        "collection",
        "searchset",
        "history",
        "message",
        "document",
        "subscription-notification",
    }
)
# Entries of a Subscription notification that describe the notification, not the patient.
NOTIFICATION_STATUS_TYPES = frozenset({"SubscriptionStatus", "Parameters"})
# Primitive types an Extension's value[x] may take (FHIR R4 and R5 datatypes): each may come
# with an ``_value<Type>`` element that fhir.resources does not declare on Extension.
EXTENSION_PRIMITIVE_VALUES = frozenset(
    f"value{t}"
    for t in (
        "Base64Binary",
        "Boolean",
        "Canonical",
        "Code",
        "Date",
        "DateTime",
        "Decimal",
        "Id",
        "Instant",
        "Integer",
        "Integer64",
        "Markdown",
        "Oid",
        "PositiveInt",
        "String",
        "Time",
        "UnsignedInt",
        "Uri",
        "Url",
        "Uuid",
    )
)
_EXTENSION_FIELDS = frozenset({"extension", "modifierExtension"})
_VERSION_PARAM = re.compile(r"fhirVersion\s*=\s*\"?([0-9.]+)\"?", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedResource:
    """One resource out of a payload, with where it was (``Bundle.entry[3]``, ``line 12``)."""

    resource: dict[str, Any]
    location: str


@dataclass(frozen=True)
class ParseFailure:
    """One part of a payload that could not be read (the rest of the payload still is)."""

    error: FhirRejected
    location: str
    raw: str | None = None  # the unreadable text, for the ingress quarantine


def version_from_content_type(content_type: str | None) -> FhirVersionValues:
    """The FHIR release a ``Content-Type`` declares (``fhirVersion=``), R4 when it says none."""
    match = _VERSION_PARAM.search(content_type or "")
    return declared_version(match.group(1)) if match else FhirVersionValues.R4


def declared_version(text: str | None) -> FhirVersionValues:
    """Map a declared ``fhirVersion`` (``4.0.1``, ``5.0`` ...) to a release; reject others."""
    if not text:
        return FhirVersionValues.R4
    version = _DECLARED_VERSIONS.get(text.strip())
    if version is None:
        raise FhirRejected(
            FhirRejectionReason.UNSUPPORTED_VERSION,
            f"fhirVersion {text.strip()[:20]!r} is not R4 (4.0/4.3) or R5 (5.0)",
        )
    return version


def load_json(payload: bytes | str) -> Any:
    """Decode one JSON document; raises ``FhirRejected(INVALID_JSON)``."""
    try:
        return json.loads(payload)
    except json.JSONDecodeError as e:
        detail = f"not JSON: {e.msg} at line {e.lineno} column {e.colno}"
        raise FhirRejected(FhirRejectionReason.INVALID_JSON, detail) from e
    except UnicodeDecodeError as e:
        raise FhirRejected(FhirRejectionReason.INVALID_JSON, f"not UTF-8: {e.reason}") from e


def iter_ndjson(payload: bytes | str) -> Iterator[ParsedResource | ParseFailure]:
    """Resources of a Bulk Data NDJSON file, one per non-empty line; bad lines are failures."""
    text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            document = load_json(line)
        except FhirRejected as e:
            yield ParseFailure(e, where, line)
            continue
        yield from iter_resources(document, where)


def iter_resources(document: Any, location: str = "") -> Iterator[ParsedResource | ParseFailure]:
    """Flatten one JSON document (resource or Bundle, Bundles nested) into its resources."""
    if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
        yield ParseFailure(
            FhirRejected(FhirRejectionReason.NOT_A_RESOURCE, _not_a_resource(document)),
            location or "payload",
        )
        return
    if document["resourceType"] != "Bundle":
        yield ParsedResource(document, location or document["resourceType"])
        return
    bundle_type = document.get("type")
    where = location or "Bundle"
    if not isinstance(bundle_type, str) or bundle_type not in BUNDLE_TYPES:
        yield ParseFailure(
            FhirRejected(
                FhirRejectionReason.UNSUPPORTED_BUNDLE_TYPE,
                f"Bundle.type {str(bundle_type)[:40]!r} is not one of {sorted(BUNDLE_TYPES)}",
                "Bundle",
            ),
            where,
        )
        return
    entries = document.get("entry") or []
    if not isinstance(entries, list):
        yield ParseFailure(
            FhirRejected(
                FhirRejectionReason.VALIDATION_FAILED, "Bundle.entry is not a list", "Bundle"
            ),
            where,
        )
        return
    for index, entry in enumerate(entries):
        entry_where = f"{where}.entry[{index}]"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is None:
            method = (entry.get("request") or {}).get("method") if isinstance(entry, dict) else None
            if method == "DELETE":
                continue  # a delete carries no resource; nothing to fold
            yield ParseFailure(
                FhirRejected(
                    FhirRejectionReason.NOT_A_RESOURCE, "Bundle entry without resource", "Bundle"
                ),
                entry_where,
            )
            continue
        if (
            bundle_type in {"history", "subscription-notification"}
            and isinstance(resource, dict)
            and resource.get("resourceType") in NOTIFICATION_STATUS_TYPES
        ):
            continue  # the notification's own status, not clinical content
        yield from iter_resources(resource, entry_where)


def validate_resource(
    resource: dict[str, Any], version: FhirVersionValues = FhirVersionValues.R4
) -> None:
    """Validate one resource against the FHIR models of ``version``; raises ``FhirRejected``.

    A payload taken as R4 that fails R4 validation but is valid R5 is rejected as
    ``R5_CONTENT_AS_R4``, so that the sender learns to declare it as FHIR 5.0 (how depends on
    the channel: the ingress adds that hint). Primitive extensions of Extension values
    (``_valueCode``) are valid FHIR JSON that the models do not declare: they are validated as
    Elements of their own (:func:`split_extension_value_elements`).
    """
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise FhirRejected(FhirRejectionReason.NOT_A_RESOURCE, _not_a_resource(resource))
    rtype = resource["resourceType"]
    rid = _safe_id(resource)
    model = _model_class(rtype, version)
    if model is None:
        other = FhirVersionValues.R5 if version is FhirVersionValues.R4 else FhirVersionValues.R4
        if version is FhirVersionValues.R4 and _model_class(rtype, other) is not None:
            raise FhirRejected(
                FhirRejectionReason.R5_CONTENT_AS_R4,
                f"{rtype[:60]!r} exists only in R5: declare the payload as FHIR 5.0",
                rtype,
                rid,
            )
        raise FhirRejected(
            FhirRejectionReason.UNKNOWN_RESOURCE_TYPE,
            f"{rtype[:60]!r} is not a FHIR {version.name} resource type",
            rtype[:60],
            rid,
        )
    try:
        _validate_as(model, resource, version)
    except (ValidationError, ValueError, TypeError) as e:
        if version is FhirVersionValues.R4 and _valid_as(resource, FhirVersionValues.R5):
            raise FhirRejected(
                FhirRejectionReason.R5_CONTENT_AS_R4,
                "invalid as R4 but valid as R5: declare the payload as FHIR 5.0",
                rtype,
                rid,
            ) from e
        raise FhirRejected(
            FhirRejectionReason.VALIDATION_FAILED, describe_error(e), rtype, rid
        ) from e


def split_extension_value_elements(node: Any) -> tuple[Any, list[tuple[str, Any]]]:
    """``node`` without the primitive extensions of its Extensions' values, and those elements.

    FHIR JSON lets every primitive value carry an ``_<name>`` element (id and extensions),
    ``Extension.valueCode`` included (``_valueCode``); fhir.resources 8 (R4B and R5) declares
    it on every type but Extension, so a valid resource would be refused as "Extra inputs are
    not permitted". The returned copy lacks them (``node`` itself when there is none); each
    comes back as ``(name, element)`` to be validated as an Element.
    """
    found: list[tuple[str, Any]] = []
    return _split(node, found, in_extension=False), found


def _split(node: Any, found: list[tuple[str, Any]], in_extension: bool) -> Any:
    if isinstance(node, list):
        items = [_split(item, found, in_extension) for item in node]
        return node if all(a is b for a, b in zip(items, node, strict=True)) else items
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    changed = False
    for name, value in node.items():
        if in_extension and name.startswith("_") and name[1:] in EXTENSION_PRIMITIVE_VALUES:
            found.append((name, _split(value, found, in_extension=False)))
            changed = True
            continue
        child = _split(value, found, in_extension=name in _EXTENSION_FIELDS)
        changed = changed or child is not value
        out[name] = child
    return out if changed else node


def _validate_as(model: Any, resource: dict[str, Any], version: FhirVersionValues) -> None:
    """Validate with ``model``; Extension values' primitive extensions as Elements."""
    stripped, elements = split_extension_value_elements(resource)
    model.model_validate(stripped)
    if not elements:
        return
    element_model: Any
    if version is FhirVersionValues.R4:
        from fhir.resources.R4B.element import Element as element_model
    else:
        from fhir.resources.element import Element as element_model
    for _name, element in elements:
        if element is not None:  # null is allowed in arrays of primitive extensions
            element_model.model_validate(element)


def normalise_r5(resource: dict[str, Any]) -> dict[str, Any]:
    """Return an R5 resource in the R4 shape of the fields ctriage reads (a shallow copy).

    Only Encounter differs there: R5 ``class`` is a list of CodeableConcepts (R4: one Coding)
    and R5 ``actualPeriod`` is R4 ``period``.
    """
    if resource.get("resourceType") != "Encounter":
        return resource
    out = dict(resource)
    klass = out.get("class")
    if isinstance(klass, list):
        codings = [c for concept in klass for c in (concept.get("coding") or [])]
        out["class"] = codings[0] if codings else {}
    if "actualPeriod" in out and "period" not in out:
        out["period"] = out.pop("actualPeriod")
    return out


def describe_error(error: BaseException) -> str:
    """A validation error as ``loc: message`` lines, without the offending input values."""
    if isinstance(error, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}"
            for item in error.errors(include_input=False, include_url=False)[:5]
        ]
        more = error.error_count() - len(parts)
        return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
    return type(error).__name__


def _model_class(rtype: str, version: FhirVersionValues) -> Any:
    if version is FhirVersionValues.R4:
        from fhir.resources.R4B import get_fhir_model_class
    else:
        from fhir.resources import get_fhir_model_class
    try:
        return get_fhir_model_class(rtype)
    except (ValueError, KeyError, AttributeError, ImportError):
        return None


def _valid_as(resource: dict[str, Any], version: FhirVersionValues) -> bool:
    model = _model_class(resource["resourceType"], version)
    if model is None:
        return False
    try:
        _validate_as(model, resource, version)
    except (ValidationError, ValueError, TypeError):
        return False
    return True


def _not_a_resource(document: Any) -> str:
    """Why valid JSON is not a resource, naming only its JSON type (never its values)."""
    if isinstance(document, dict):
        return "a JSON object without a resourceType string"
    kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return f"{kind.get(type(document), 'a number')}, not a JSON object with resourceType"


def _safe_id(resource: dict[str, Any]) -> str | None:
    """The resource id for messages; never a Patient's (it is a direct identifier at ingress)."""
    if resource.get("resourceType") == "Patient":
        return None
    rid = resource.get("id")
    return str(rid)[:64] if rid is not None else None
