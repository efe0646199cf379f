"""Staffed ICU beds and ventilators per hospital unit, from FHIR Locations and configuration.

Capacity of a unit: the configuration (``hospital/unit`` -> beds, ventilators) first, then the
FHIR Locations and Devices of the capacity file (:mod:`triage.capacity.locations`), then the
hospital's beds and a fallback ventilator count. A scored CT names no unit: in a hospital whose
units are known its patient is expected in the first unit (by id), else in the hospital's ICU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from triage.capacity.locations import UnitCapacity, read_resources, unit_capacities


@dataclass(frozen=True)
class CapacityRegistry:
    """Staffed ICU beds and ventilators per ``(hospital, unit)``; ``unit`` None: the hospital."""

    units: dict[tuple[str, str | None], UnitCapacity] = field(default_factory=dict)
    default_beds: dict[str, int] = field(default_factory=dict)
    fallback_beds: int = 12
    fallback_ventilators: int = 8

    def beds(self, hospital: str, unit: str | None) -> int:
        """Staffed ICU beds of a unit (or of the hospital's ICU)."""
        known = self.units.get((hospital, unit))
        if known is not None and known.beds is not None:
            return known.beds
        return self.default_beds.get(hospital, self.fallback_beds)

    def ventilators(self, hospital: str, unit: str | None) -> int:
        """Ventilators of a unit (or of the hospital's ICU)."""
        known = self.units.get((hospital, unit))
        if known is not None and known.ventilators is not None:
            return known.ventilators
        return self.fallback_ventilators

    def admitting_unit(self, hospital: str) -> str | None:
        """Where a scored patient of a hospital with ICU units is expected (first unit by id)."""
        units = sorted(unit for h, unit in self.units if h == hospital and unit is not None)
        return units[0] if units else None

    @property
    def icu_locations(self) -> frozenset[str]:
        """Ids of the Locations known as ICU units (Encounter.location references them)."""
        return frozenset(unit for _, unit in self.units if unit is not None)


def build_registry(
    locations: Path | None,
    unit_capacity: Mapping[str, Mapping[str, int]],
    hospital: str,
    default_beds: Mapping[str, int] | None = None,
    fallback_beds: int = 12,
    fallback_ventilators: int = 8,
) -> CapacityRegistry:
    """The registry from a FHIR Locations file (read once) and configured counts.

    ``unit_capacity`` maps ``hospital`` or ``hospital/unit`` to ``{"beds": n, "ventilators": m}``
    (either may be missing: the Locations file's count stays); ``hospital`` owns Locations that
    name no managing organisation.
    """
    units: dict[tuple[str, str | None], UnitCapacity] = {}
    if locations is not None:
        resources = read_resources(locations)
        for (owner, unit), capacity in unit_capacities(resources, hospital).items():
            units[(owner, unit)] = capacity
    for key, counts in unit_capacity.items():
        owner, _, unit = key.partition("/")
        before = units.get((owner, unit or None))
        units[(owner, unit or None)] = UnitCapacity(
            hospital=owner,
            unit=unit,
            beds=counts.get("beds", before.beds if before else None),
            ventilators=counts.get("ventilators", before.ventilators if before else None),
        )
    return CapacityRegistry(
        units=units,
        default_beds=dict(default_beds or {}),
        fallback_beds=fallback_beds,
        fallback_ventilators=fallback_ventilators,
    )
