"""The German ICU register (DIVI-Intensivregister, Robert Koch-Institut) as daily capacity series.

Source: "Intensivkapazitäten und COVID-19-Intensivbettenbelegung in Deutschland" (RKI, CC BY 4.0,
doi:10.5281/zenodo.22058262): ``Intensivregister_Deutschland_Kapazitaeten.csv`` (the nation) and
``Intensivregister_Bundeslaender_Kapazitaeten.csv`` (16 states), gzipped. Adults only
(``behandlungsgruppe`` ``Erwachsene``), the one treatment group of the states' file, so that the
nation is the sum of its states. Columns mapped (README_DE.md and ``schemas/``):

- ``faelle_covid_aktuell`` -> ``icu_occupancy``: SARS-CoV-2-positive patients in ICU care now;
- ``faelle_covid_erstaufnahmen`` -> ``icu_admissions``: first ICU admissions of COVID-19
  patients, recorded directly from 2021-07-29. A day's admissions are reported the next day: the
  row of day ``d`` holds the admissions since the report of ``d - 1``, the patients that entered
  the census of ``d``; that is what ``icu_admissions`` means (as the Italian ``ingressi``), so
  the rows are not shifted;
- ``intensivbetten_belegt + intensivbetten_frei`` -> ``icu_capacity``: staffed (operable) adult
  ICU beds, for all patients, not only COVID-19.

``NA`` is unknown. Populations (for CHIME) are Destatis' residents on 31 December 2019.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from triage.capacity.exceptions import CapacityDataReason, CapacityDataRejected
from triage.capacity.series import DailySeries, from_frame

NATIONAL_CSV = "Intensivregister_Deutschland_Kapazitaeten.csv.gz"
STATES_CSV = "Intensivregister_Bundeslaender_Kapazitaeten.csv.gz"
GERMANY = "Deutschland"
ADULTS = "Erwachsene"

POPULATION = {
    GERMANY: 83_166_711,
    "Baden-Württemberg": 11_100_394,
    "Bayern": 13_124_737,
    "Berlin": 3_669_491,
    "Brandenburg": 2_521_893,
    "Bremen": 681_202,
    "Hamburg": 1_847_253,
    "Hessen": 6_288_080,
    "Mecklenburg-Vorpommern": 1_608_138,
    "Niedersachsen": 7_993_608,
    "Nordrhein-Westfalen": 17_947_221,
    "Rheinland-Pfalz": 4_093_903,
    "Saarland": 986_887,
    "Sachsen": 4_071_971,
    "Sachsen-Anhalt": 2_194_782,
    "Schleswig-Holstein": 2_903_773,
    "Thüringen": 2_133_378,
}

_SOURCE_COLUMNS = (
    "datum",
    "bundesland_name",
    "behandlungsgruppe",
    "faelle_covid_aktuell",
    "faelle_covid_erstaufnahmen",
    "intensivbetten_belegt",
    "intensivbetten_frei",
)


def _read(path: Path) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, dtype={"bundesland_id": str}, na_values=["NA"])
    except (OSError, ValueError) as e:
        raise CapacityDataRejected(CapacityDataReason.UNREADABLE, f"{path}: {e}") from e
    missing = [c for c in _SOURCE_COLUMNS if c not in raw.columns]
    if missing:
        raise CapacityDataRejected(
            CapacityDataReason.MISSING_COLUMN, f"{path.name}: no column {', '.join(missing)}"
        )
    return raw


def standard_frame(folder: Path, state: str = GERMANY) -> pd.DataFrame:
    """The nation's (``Deutschland``) or one state's adult series with the standard column names."""
    if state not in POPULATION:
        raise CapacityDataRejected(
            CapacityDataReason.UNKNOWN_REGION, f"{state!r} (known: {sorted(POPULATION)})"
        )
    return _standard(_read(folder / (NATIONAL_CSV if state == GERMANY else STATES_CSV)), state)


def _standard(raw: pd.DataFrame, state: str) -> pd.DataFrame:
    raw = raw[(raw["bundesland_name"] == state) & (raw["behandlungsgruppe"] == ADULTS)]
    if raw.empty:
        raise CapacityDataRejected(CapacityDataReason.UNKNOWN_REGION, f"{state!r}: no adult rows")
    return pd.DataFrame(
        {
            "date": raw["datum"].astype(str).str[:10],
            "icu_occupancy": raw["faelle_covid_aktuell"],
            "icu_admissions": raw["faelle_covid_erstaufnahmen"],
            "icu_capacity": raw["intensivbetten_belegt"] + raw["intensivbetten_frei"],
        }
    ).reset_index(drop=True)


def load(folder: Path, state: str = GERMANY) -> DailySeries:
    """The register's series of ``state`` (or the nation) as a validated daily series."""
    return from_frame(standard_frame(folder, state), state)


def load_states(folder: Path) -> dict[str, DailySeries]:
    """The 16 states' series (the states' file read once), by name."""
    raw = _read(folder / STATES_CSV)
    return {
        state: from_frame(_standard(raw, state), state) for state in POPULATION if state != GERMANY
    }
