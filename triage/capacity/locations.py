"""ICU capacity (staffed beds, ventilators) per hospital unit, from FHIR R4 Locations and Devices.

FHIR R4 has no field for a bed count, so two representations are accepted:

1. **Bed Locations** (the standard one): each bed is a Location with ``physicalType`` ``bd``
   (HL7 location-physical-type) and ``partOf`` the unit's Location. A bed counts as staffed when
   its ``status`` is ``active`` and its ``operationalStatus`` (HL7 v2 table 0116) is not ``C``
   (closed); occupied, unoccupied, housekeeping, isolated and contaminated beds all count.
   **Ventilators** are Devices with ``type`` SNOMED CT 706172005 (ventilator), ``status``
   ``active`` and ``location`` the unit (or one of its beds).
2. **Counts on the unit Location** (for a bed board that publishes totals only): extensions
   :data:`STAFFED_BEDS_EXTENSION` and :data:`VENTILATORS_EXTENSION` with ``valueInteger``
   (a local definition: no standard extension exists). A count given this way wins over counting.

A unit is a Location whose ``type`` is HL7 v3 RoleCode ``ICU``; its key is ``Location.id`` (what
Encounter.location and Procedure.location reference). Its hospital is the id of
``managingOrganization`` (``Organization/<id>``), else its ``identifier.value``, else the
``default_hospital`` given. Every resource is validated with ``fhir.resources.R4B``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triage.capacity.exceptions import CapacityDataReason, CapacityDataRejected
from triage.exceptions import FhirRejected
from triage.fhir.icu import is_icu_location
from triage.fhir.parse import (
    ParseFailure,
    iter_ndjson,
    iter_resources,
    load_json,
    validate_resource,
)

STAFFED_BEDS_EXTENSION = "https://ctriage.invalid/fhir/StructureDefinition/staffed-icu-beds"
VENTILATORS_EXTENSION = "https://ctriage.invalid/fhir/StructureDefinition/ventilators"
BED_PHYSICAL_TYPE = ("http://terminology.hl7.org/CodeSystem/location-physical-type", "bd")
BED_STATUS_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0116"
CLOSED_BED = "C"
VENTILATOR_DEVICE = ("http://snomed.info/sct", "706172005")


@dataclass(frozen=True)
class UnitCapacity:
    """Staffed ICU beds and ventilators of one unit (``None``: not known from this source)."""

    hospital: str
    unit: str
    beds: int | None = None
    ventilators: int | None = None


def read_resources(path: Path) -> list[dict[str, Any]]:
    """Resources of a JSON file (resource or Bundle) or NDJSON file, each validated as R4."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CapacityDataRejected(CapacityDataReason.UNREADABLE, f"{path}: {e}") from e
    try:
        parts = (
            list(iter_ndjson(text))
            if path.suffix == ".ndjson"
            else list(iter_resources(load_json(text)))
        )
        failures = [p for p in parts if isinstance(p, ParseFailure)]
        if failures:
            raise failures[0].error
        resources = [p.resource for p in parts if not isinstance(p, ParseFailure)]
        for resource in resources:
            validate_resource(resource)
    except FhirRejected as e:
        raise CapacityDataRejected(CapacityDataReason.INVALID_LOCATION, f"{path}: {e}") from e
    return resources


def unit_capacities(
    resources: Iterable[dict[str, Any]], default_hospital: str
) -> dict[tuple[str, str], UnitCapacity]:
    """Capacity of every ICU unit described by Locations (units, beds) and Devices."""
    resources = list(resources)
    locations = {
        str(r["id"]): r for r in resources if r.get("resourceType") == "Location" and r.get("id")
    }
    units = {lid: loc for lid, loc in locations.items() if is_icu_location(loc)}
    beds: dict[str, int] = dict.fromkeys(units, 0)
    for loc in locations.values():
        unit = _unit_of(loc, locations, units)
        if unit is not None and unit != loc.get("id") and _is_staffed_bed(loc):
            beds[unit] += 1
    ventilators: dict[str, int] = dict.fromkeys(units, 0)
    for device in resources:
        if device.get("resourceType") != "Device" or not _is_active_ventilator(device):
            continue
        where = _reference_id(device.get("location"), "Location")
        unit = _unit_of(locations[where], locations, units) if where in locations else None
        if unit is not None:
            ventilators[unit] += 1
    out: dict[tuple[str, str], UnitCapacity] = {}
    for lid, loc in units.items():
        hospital = _hospital_of(loc, default_hospital)
        out[(hospital, lid)] = UnitCapacity(
            hospital=hospital,
            unit=lid,
            beds=_first_known(_extension_count(loc, STAFFED_BEDS_EXTENSION), beds[lid]),
            ventilators=_first_known(
                _extension_count(loc, VENTILATORS_EXTENSION), ventilators[lid]
            ),
        )
    return out


def _first_known(declared: int | None, counted: int) -> int | None:
    """A declared count wins; a count of zero resources means "not described here"."""
    if declared is not None:
        return declared
    return counted or None


def _unit_of(
    loc: dict[str, Any], locations: dict[str, dict[str, Any]], units: dict[str, Any]
) -> str | None:
    """The ICU unit a Location is (or lies in, following ``partOf``), else None."""
    seen: set[str] = set()
    current: dict[str, Any] | None = loc
    while current is not None and str(current.get("id")) not in seen:
        lid = str(current.get("id"))
        if lid in units:
            return lid
        seen.add(lid)
        parent = _reference_id(current.get("partOf"), "Location")
        current = locations.get(parent) if parent else None
    return None


def _is_staffed_bed(loc: dict[str, Any]) -> bool:
    physical = [
        (c.get("system"), c.get("code"))
        for c in (loc.get("physicalType") or {}).get("coding") or []
    ]
    if BED_PHYSICAL_TYPE not in physical or loc.get("status", "active") != "active":
        return False
    status = loc.get("operationalStatus") or {}
    return not (status.get("system") == BED_STATUS_SYSTEM and status.get("code") == CLOSED_BED)


def _is_active_ventilator(device: dict[str, Any]) -> bool:
    codings = [
        (c.get("system"), c.get("code")) for c in (device.get("type") or {}).get("coding") or []
    ]
    return VENTILATOR_DEVICE in codings and device.get("status") == "active"


def _extension_count(loc: dict[str, Any], url: str) -> int | None:
    for ext in loc.get("extension") or []:
        if ext.get("url") == url and isinstance(ext.get("valueInteger"), int):
            return max(0, int(ext["valueInteger"]))
    return None


def _hospital_of(loc: dict[str, Any], default: str) -> str:
    org = loc.get("managingOrganization") or {}
    return (
        _reference_id(org, "Organization") or (org.get("identifier") or {}).get("value") or default
    )


def _reference_id(ref: Any, kind: str) -> str | None:
    if not isinstance(ref, dict):
        return None
    head, _, ident = str(ref.get("reference", "")).split("/_history", 1)[0].rpartition("/")
    return ident if ident and head.rsplit("/", 1)[-1] == kind else None
