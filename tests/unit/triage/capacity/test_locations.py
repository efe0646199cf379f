"""ICU capacity from FHIR R4 Locations and Devices, and the worker's capacity registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from triage.capacity.exceptions import CapacityDataReason, CapacityDataRejected
from triage.capacity.locations import (
    STAFFED_BEDS_EXTENSION,
    VENTILATORS_EXTENSION,
    read_resources,
    unit_capacities,
)
from triage.capacity.registry import build_registry

pytestmark = pytest.mark.unit

PHYSICAL = "http://terminology.hl7.org/CodeSystem/location-physical-type"
BED_STATUS = "http://terminology.hl7.org/CodeSystem/v2-0116"


def unit(lid: str, hospital: str = "h1", **extra: object) -> dict:
    return {
        "resourceType": "Location",
        "id": lid,
        "status": "active",
        "name": f"ICU {lid}",
        "mode": "instance",
        "type": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                        "code": "ICU",
                        "display": "Intensive care unit",
                    }
                ]
            }
        ],
        "physicalType": {"coding": [{"system": PHYSICAL, "code": "wa", "display": "Ward"}]},
        "managingOrganization": {"reference": f"Organization/{hospital}"},
        **extra,
    }


def bed(lid: str, part_of: str, status: str = "U", active: str = "active") -> dict:
    return {
        "resourceType": "Location",
        "id": lid,
        "status": active,
        "operationalStatus": {"system": BED_STATUS, "code": status},
        "mode": "instance",
        "physicalType": {"coding": [{"system": PHYSICAL, "code": "bd", "display": "Bed"}]},
        "partOf": {"reference": f"Location/{part_of}"},
    }


def ventilator(did: str, location: str, status: str = "active") -> dict:
    return {
        "resourceType": "Device",
        "id": did,
        "status": status,
        "type": {
            "coding": [
                {
                    "system": "http://snomed.info/sct",
                    "code": "706172005",
                    "display": "Ventilator (physical object)",
                }
            ]
        },
        "location": {"reference": f"Location/{location}"},
    }


def bundle(*resources: dict) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": f"urn:uuid:00000000-0000-0000-0000-{i:012d}", "resource": r}
            for i, r in enumerate(resources)
        ],
    }


def write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "locations.json"
    path.write_text(json.dumps(document))
    return path


def test_beds_and_ventilators_are_counted_from_bed_locations_and_devices(tmp_path: Path) -> None:
    resources = read_resources(  # every resource validated with fhir.resources.R4B
        write(
            tmp_path,
            bundle(
                unit("icu-north"),
                bed("b1", "icu-north", "O"),
                bed("b2", "icu-north", "U"),
                bed("b3", "icu-north", "K"),  # contaminated: staffed, not usable now, counts
                bed("b4", "icu-north", "C"),  # closed: not staffed
                bed("b5", "icu-north", active="inactive"),
                {**bed("w1", "ward-3"), "partOf": {"reference": "Location/ward-3"}},
                ventilator("v1", "icu-north"),
                ventilator("v2", "b1"),  # at a bed of the unit
                ventilator("v3", "icu-north", status="inactive"),
                ventilator("v4", "ward-3"),
            ),
        )
    )
    (capacity,) = unit_capacities(resources, default_hospital="fallback").values()
    assert (capacity.hospital, capacity.unit, capacity.beds, capacity.ventilators) == (
        "h1",
        "icu-north",
        3,
        2,
    )


def test_counts_declared_on_the_unit_win_and_ndjson_is_read(tmp_path: Path) -> None:
    counted = unit(
        "icu-south",
        hospital="h2",
        extension=[
            {"url": STAFFED_BEDS_EXTENSION, "valueInteger": 14},
            {"url": VENTILATORS_EXTENSION, "valueInteger": 0},
        ],
    )
    path = tmp_path / "locations.ndjson"
    path.write_text("\n".join(json.dumps(r) for r in [counted, bed("s1", "icu-south")]) + "\n")
    capacities = unit_capacities(read_resources(path), default_hospital="x")
    assert capacities[("h2", "icu-south")].beds == 14
    assert capacities[("h2", "icu-south")].ventilators == 0  # declared zero, not "unknown"


@pytest.mark.parametrize(
    "document",
    [
        {"resourceType": "Location", "id": "x", "partOf": "Location/y"},  # not a Reference
        {"resourceType": "Bundle", "type": "weird"},
        {"resourceType": "Location", "id": "x", "extension": [{"url": 3}]},
    ],
)
def test_bad_location_files_are_refused_with_a_reason(tmp_path: Path, document: dict) -> None:
    with pytest.raises(CapacityDataRejected) as caught:
        read_resources(write(tmp_path, document))
    assert caught.value.reason is CapacityDataReason.INVALID_LOCATION


def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "locations.json"
    path.write_bytes(b"\xff\xfe not json")
    with pytest.raises(CapacityDataRejected) as caught:
        read_resources(path)
    assert caught.value.reason is CapacityDataReason.UNREADABLE


def test_registry_configuration_wins_over_locations_then_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, bundle(unit("icu-north"), bed("b1", "icu-north"), ventilator("v", "b1")))
    registry = build_registry(
        path,
        {"h1/icu-north": {"ventilators": 5}, "h3": {"beds": 30}},
        hospital="h1",
        fallback_beds=12,
        fallback_ventilators=8,
    )
    assert registry.beds("h1", "icu-north") == 1  # from the bed Locations
    assert registry.ventilators("h1", "icu-north") == 5  # configuration overrides the Devices
    assert registry.beds("h3", None) == 30 and registry.ventilators("h3", None) == 8
    assert registry.beds("elsewhere", "icu-9") == 12
    assert registry.icu_locations == frozenset({"icu-north"})


def test_scored_patients_join_the_first_unit_of_their_hospital() -> None:
    units = {"h1/icu-b": {"beds": 4}, "h1/icu-a": {"beds": 6}, "h2": {}}
    registry = build_registry(None, units, hospital="h1")
    assert registry.admitting_unit("h1") == "icu-a"
    assert registry.admitting_unit("h2") is None  # hospital-level ICU
