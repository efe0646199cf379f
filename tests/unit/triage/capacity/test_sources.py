"""One entry point for the public series: regions, populations, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage.capacity import divi, dpc, sources
from triage.capacity.exceptions import CapacityDataReason, CapacityDataRejected
from triage.capacity.sources import SeriesSourceValues

pytestmark = pytest.mark.unit


def test_regions_start_with_the_nation_and_know_their_population() -> None:
    italy = sources.regions(SeriesSourceValues.DPC)
    germany = sources.regions(SeriesSourceValues.DIVI)
    assert (italy[0], len(italy)) == (dpc.ITALY, 22)
    assert (germany[0], len(germany)) == (divi.GERMANY, 17)
    assert sources.population(SeriesSourceValues.DIVI) == divi.POPULATION[divi.GERMANY]
    assert sources.population(SeriesSourceValues.DPC, "Molise") == 301_000


@pytest.mark.parametrize(
    ("region", "folder", "reason"),
    [
        ("Atlantis", Path("."), CapacityDataReason.UNKNOWN_REGION),
        ("Bremen", Path("/nonexistent"), CapacityDataReason.UNREADABLE),
    ],
)
def test_unknown_regions_and_missing_files_are_refused(
    region: str, folder: Path, reason: CapacityDataReason
) -> None:
    with pytest.raises(CapacityDataRejected) as info:
        sources.load(SeriesSourceValues.DIVI, folder, region)
    assert info.value.reason is reason
