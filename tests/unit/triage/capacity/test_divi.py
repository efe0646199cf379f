"""The German ICU register (DIVI) as daily series: columns, adults only, nation = its states."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from paths import SHARED_DATA

from triage.capacity import divi
from triage.capacity.exceptions import CapacityDataReason, CapacityDataRejected

pytestmark = pytest.mark.unit

DIVI = SHARED_DATA / "capacity" / "germany-divi"


def _register(folder: Path, rows: list[dict[str, object]], name: str) -> None:
    pd.DataFrame(rows).to_csv(folder / name, index=False, na_rep="NA", compression="gzip")


def test_converter_maps_the_documented_columns(tmp_path: Path) -> None:
    """SYNTHETIC register rows: adults kept, children dropped, capacity = occupied + free."""
    days = pd.date_range("2021-07-01", periods=70).strftime("%Y-%m-%d")
    rows = []
    for i, day in enumerate(days):
        for group in ("Erwachsene", "Kinder"):
            rows.append(
                {"datum": day, "bundesland_id": "00", "bundesland_name": "Deutschland",
                 "behandlungsgruppe": group, "faelle_covid_aktuell": 100 + i if group ==
                 "Erwachsene" else 3, "faelle_covid_erstaufnahmen": None if i < 28 else 9,
                 "intensivbetten_belegt": 200, "intensivbetten_frei": 50}
            )  # fmt: skip
    _register(tmp_path, rows, divi.NATIONAL_CSV)
    series = divi.load(tmp_path)
    assert series.name == "Deutschland" and series.dates.size == 70
    assert series.occupancy[:3] == pytest.approx([100, 101, 102])
    assert np.isnan(series.admissions[:28]).all() and series.admissions[28] == 9
    assert series.capacity == pytest.approx(np.full(70, 250.0))
    with pytest.raises(CapacityDataRejected) as info:
        divi.load(tmp_path, "Atlantis")
    assert info.value.reason is CapacityDataReason.UNKNOWN_REGION


def test_a_register_without_the_census_column_is_refused(tmp_path: Path) -> None:
    _register(tmp_path, [{"datum": "2021-01-01", "bundesland_name": "Bremen"}], divi.STATES_CSV)
    with pytest.raises(CapacityDataRejected) as info:
        divi.load(tmp_path, "Bremen")
    assert info.value.reason is CapacityDataReason.MISSING_COLUMN


@pytest.mark.skipif(not DIVI.is_dir(), reason="shared real data folder absent")
def test_real_register_nation_is_the_sum_of_its_16_states() -> None:
    """REAL data: adults' COVID-19 ICU census, every day, nation = sum of the states."""
    nation = divi.load(DIVI)
    states = list(divi.load_states(DIVI).values())
    assert len(states) == 16
    total = np.sum([s.occupancy for s in states], axis=0)
    assert total == pytest.approx(nation.occupancy)
    first_admissions = nation.dates[np.flatnonzero(~np.isnan(nation.admissions))[0]]
    assert str(first_admissions.date()) == "2021-07-29"  # recorded directly from then (README)
    assert divi.load(DIVI, "Bremen").occupancy == pytest.approx(states[4].occupancy)
