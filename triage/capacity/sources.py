"""The public daily series the capacity tools read directly: one converter per source.

- ``dpc``: the Italian Civil Protection's COVID-19 series (``triage.capacity.dpc``): the nation
  (``Italia``) and 21 regions;
- ``divi``: the German ICU register (``triage.capacity.divi``): the nation (``Deutschland``) and
  16 states.

Each converter maps its source's columns to the daily-series CSV of ``triage.capacity.series``
and knows its regions' populations (for CHIME).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import pandas as pd

from triage.capacity import divi, dpc
from triage.capacity.exceptions import CapacityDataReason, CapacityDataRejected
from triage.capacity.series import DailySeries, from_frame


class SeriesSourceValues(StrEnum):
    """Public series with a converter (closed list)."""

    DPC = "dpc"
    DIVI = "divi"


_NATION = {SeriesSourceValues.DPC: dpc.ITALY, SeriesSourceValues.DIVI: divi.GERMANY}
_POPULATION = {SeriesSourceValues.DPC: dpc.POPULATION, SeriesSourceValues.DIVI: divi.POPULATION}


def regions(source: SeriesSourceValues) -> list[str]:
    """The nation first, then its regions (alphabetical)."""
    nation = _NATION[source]
    return [nation, *sorted(r for r in _POPULATION[source] if r != nation)]


def population(source: SeriesSourceValues, region: str | None = None) -> int:
    """Residents of ``region`` (the nation by default), as the converter documents them."""
    name = region or _NATION[source]
    if name not in _POPULATION[source]:
        raise CapacityDataRejected(
            CapacityDataReason.UNKNOWN_REGION, f"{name!r} (known: {regions(source)})"
        )
    return _POPULATION[source][name]


def standard_frame(
    source: SeriesSourceValues, folder: Path, region: str | None = None
) -> pd.DataFrame:
    """``region``'s series (the nation by default) with the standard column names."""
    name = region or _NATION[source]
    population(source, name)  # refuses an unknown region before reading anything
    try:
        if source is SeriesSourceValues.DPC:
            return dpc.standard_frame(folder, name)
        return divi.standard_frame(folder, name)
    except OSError as e:
        raise CapacityDataRejected(CapacityDataReason.UNREADABLE, f"{folder}: {e}") from e


def load(source: SeriesSourceValues, folder: Path, region: str | None = None) -> DailySeries:
    """``region``'s series (the nation by default) as a validated daily series."""
    name = region or _NATION[source]
    return from_frame(standard_frame(source, folder, name), name)
