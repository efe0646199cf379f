"""Keyed pseudonymisation of FHIR R4 resources at ingress.

A patient id becomes ``"<key_version>-<first 20 hex of HMAC-SHA256(key, id)>"``: stable for one key,
unlinkable without it, and the key version says which key made it (keys rotate). Patient resources
lose every direct identifier (name, address, telecom, identifier, photo, contact, links, extensions,
narrative) and keep only the birth year; every reference to a patient, anywhere in any resource
(``subject``, ``patient``, ``beneficiary``, ...), is rewritten to ``Patient/<pseudonym>`` and loses
its ``display`` and ``identifier``. Bundles are processed entry by entry, recursively.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from typing import Any

from triage.exceptions import FhirRejected, FhirRejectionReason

logger = logging.getLogger(__name__)

PSEUDONYM_HEX_CHARS = 20
# Direct identifiers (and places where they hide: narrative, extensions such as birthPlace or
# mothersMaidenName) that never leave the ingress stage.
PATIENT_DROPPED_FIELDS = (
    "name",
    "address",
    "telecom",
    "identifier",
    "photo",
    "contact",
    "link",
    "text",
    "extension",
    "modifierExtension",
)
PATIENT_REFERENCE_FIELDS = ("subject", "patient", "beneficiary")
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]*)?$")
_URN_UUID = "urn:uuid:"
_YEAR = re.compile(r"^(\d{4})")


def pseudonymise_id(raw_id: str, key: bytes, key_version: str) -> str:
    """Return the keyed pseudonym ``"<key_version>-<20 hex>"`` of a patient id."""
    if not raw_id:
        raise FhirRejected(FhirRejectionReason.MISSING_SUBJECT, "empty patient id")
    if not key or not key_version:
        raise ValueError("pseudonymisation needs a non-empty key and key_version")
    digest = hmac.new(key, raw_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{key_version}-{digest[:PSEUDONYM_HEX_CHARS]}"


def pseudonymise_resource(
    resource: dict[str, Any],
    key: bytes,
    key_version: str,
    patient_urls: dict[str, str] | None = None,
    check_type: bool = True,
) -> dict[str, Any]:
    """Return a pseudonymised deep copy of a FHIR R4 resource (Patient, any resource, or Bundle).

    ``patient_urls`` (from :func:`bundle_patient_urls`) resolves ``urn:uuid:`` references of a
    resource taken out of its Bundle. Raises :class:`FhirRejected` for a payload that is not a
    FHIR resource, an unknown resource type (unless ``check_type`` is off because the caller
    validated it, e.g. as R5), or a patient reference we cannot pseudonymise (identifier-only).
    """
    if check_type:
        _check_resource(resource)
    out = copy.deepcopy(resource)
    if out["resourceType"] == "Bundle":
        patient_urls = {**(patient_urls or {}), **bundle_patient_urls(out)}
    return _pseudonymise(out, key, key_version, patient_urls or {}, contained=False)


def patient_key(resource: dict[str, Any]) -> str:
    """Return the patient id a (pseudonymised) resource belongs to: Patient.id or its subject."""
    if resource.get("resourceType") == "Patient" and resource.get("id"):
        return str(resource["id"])
    for field in PATIENT_REFERENCE_FIELDS:
        ref = resource.get(field)
        if isinstance(ref, dict):
            match = _PATIENT_REF.search(str(ref.get("reference", "")))
            if match:
                return match.group(1)
    raise FhirRejected(
        FhirRejectionReason.MISSING_SUBJECT,
        "no Patient reference in subject/patient/beneficiary",
        resource.get("resourceType"),
        resource.get("id"),
    )


def _check_resource(resource: Any) -> None:
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise FhirRejected(
            FhirRejectionReason.NOT_A_RESOURCE, "not a JSON object with a resourceType string"
        )
    from fhir.resources.R4B import get_fhir_model_class

    try:
        get_fhir_model_class(resource["resourceType"])
    except (ValueError, KeyError, AttributeError) as e:
        raise FhirRejected(
            FhirRejectionReason.UNKNOWN_RESOURCE_TYPE,
            f"{resource['resourceType']!r} is not an R4 resource type",
            resource["resourceType"],
            resource.get("id"),
        ) from e


def bundle_patient_urls(bundle: dict[str, Any]) -> dict[str, str]:
    """Map each Patient entry's fullUrl (e.g. urn:uuid:...) to its raw id, nested bundles too."""
    urls: dict[str, str] = {}
    for entry in _as_list(bundle.get("entry")):
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict):
            continue
        if res.get("resourceType") == "Patient" and entry.get("fullUrl") and res.get("id"):
            urls[str(entry["fullUrl"])] = str(res["id"])
        elif res.get("resourceType") == "Bundle":
            urls.update(bundle_patient_urls(res))
    return urls


def _pseudonymise(
    res: dict[str, Any],
    key: bytes,
    key_version: str,
    patient_urls: dict[str, str],
    contained: bool,
) -> dict[str, Any]:
    rtype = res.get("resourceType")
    if rtype == "Bundle":
        for entry in _as_list(res.get("entry")):
            if isinstance(entry, dict):
                _pseudonymise_entry(entry, key, key_version, patient_urls)
        return res
    res.pop("text", None)
    if rtype == "Patient":
        _strip_patient(res, key, key_version, keep_id=contained)
    for item in _as_list(res.get("contained")):
        if isinstance(item, dict):
            _pseudonymise(item, key, key_version, patient_urls, contained=True)
    _rewrite_references(res, key, key_version, patient_urls, field=None)
    return res


def _pseudonymise_entry(
    entry: dict[str, Any], key: bytes, key_version: str, patient_urls: dict[str, str]
) -> None:
    resource = entry.get("resource")
    if not isinstance(resource, dict):
        return
    _check_resource(resource)
    raw_id = str(resource.get("id", ""))
    is_patient = resource.get("resourceType") == "Patient"
    entry["resource"] = _pseudonymise(resource, key, key_version, patient_urls, contained=False)
    if is_patient and raw_id:
        pseudonym = pseudonymise_id(raw_id, key, key_version)
        if "fullUrl" in entry:
            entry["fullUrl"] = f"Patient/{pseudonym}"
        request = entry.get("request")
        if isinstance(request, dict):
            request.pop("ifNoneExist", None)  # conditional create by identifier leaks it
            if raw_id in str(request.get("url", "")):
                request["url"] = f"Patient/{pseudonym}"
        entry.pop("response", None)


def _strip_patient(res: dict[str, Any], key: bytes, key_version: str, keep_id: bool) -> None:
    for field in PATIENT_DROPPED_FIELDS:
        res.pop(field, None)
    if not keep_id:
        raw_id = res.get("id")
        if not raw_id:
            raise FhirRejected(FhirRejectionReason.MISSING_SUBJECT, "Patient without id", "Patient")
        res["id"] = pseudonymise_id(str(raw_id), key, key_version)
    for field in ("birthDate", "deceasedDateTime"):
        if field in res:
            match = _YEAR.match(str(res[field]))
            if match:
                res[field] = match.group(1)
            else:
                res.pop(field)
    res.pop("meta", None)  # meta.source / tags can carry the source system's record id


def _rewrite_references(
    node: Any, key: bytes, key_version: str, patient_urls: dict[str, str], field: str | None
) -> None:
    if isinstance(node, list):
        for item in node:
            _rewrite_references(item, key, key_version, patient_urls, field)
        return
    if not isinstance(node, dict):
        return
    if "reference" in node or (field in PATIENT_REFERENCE_FIELDS and "identifier" in node):
        _rewrite_reference(node, key, key_version, patient_urls, field)
    for name, value in node.items():
        if name == "contained":
            continue  # contained resources were handled as resources of their own
        if name == "resource" and isinstance(value, dict) and "resourceType" in value:
            _check_resource(value)  # e.g. Parameters.parameter.resource
            _pseudonymise(value, key, key_version, patient_urls, contained=False)
            continue
        _rewrite_references(value, key, key_version, patient_urls, name)


def _rewrite_reference(
    ref: dict[str, Any],
    key: bytes,
    key_version: str,
    patient_urls: dict[str, str],
    field: str | None,
) -> None:
    target = str(ref.get("reference", ""))
    raw_id: str | None = None
    match = _PATIENT_REF.search(target)
    if match:
        raw_id = match.group(1)
    elif target in patient_urls:
        raw_id = patient_urls[target]
    elif (
        target.startswith(_URN_UUID)
        and field in PATIENT_REFERENCE_FIELDS
        and ref.get("type", "Patient") == "Patient"
    ):
        # A standalone resource whose subject points into a transaction we do not see.
        raw_id = target[len(_URN_UUID) :]
    elif (
        not target and field in PATIENT_REFERENCE_FIELDS and ref.get("type", "Patient") == "Patient"
    ):
        raise FhirRejected(
            FhirRejectionReason.MISSING_SUBJECT,
            f"{field} refers to the patient by identifier only; a resource id is needed",
        )
    if raw_id is None:
        return
    ref["reference"] = f"Patient/{pseudonymise_id(raw_id, key, key_version)}"
    ref.pop("display", None)
    ref.pop("identifier", None)


def _as_list(value: Any) -> list[Any]:
    """A JSON array as a list; anything else (absent, ``true``, an object) as no items."""
    return value if isinstance(value, list) else []


@dataclass(frozen=True)
class Pseudonymiser:
    """The keyed HMAC used at ingress."""

    key: bytes
    key_version: str

    def patient(self, raw_id: str) -> str:
        """Pseudonym of a raw patient id."""
        return pseudonymise_id(raw_id, self.key, self.key_version)

    def resource(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Pseudonymised copy of a FHIR resource or Bundle."""
        return pseudonymise_resource(resource, self.key, self.key_version)
