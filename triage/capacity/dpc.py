"""The Italian Civil Protection (DPC) COVID-19 series as daily capacity series.

Source: pcm-dpc/COVID-19 (CC BY 4.0), national ``dpc-covid19-ita-andamento-nazionale.csv`` and the
regional files concatenated. Columns mapped: ``terapia_intensiva`` -> ``icu_occupancy``,
``ingressi_terapia_intensiva`` -> ``icu_admissions`` (published from December 2020),
``totale_ospedalizzati`` -> ``hospital_occupancy``. Populations (for CHIME) are ISTAT's residents
on 1 January 2020, rounded to the thousand.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from triage.capacity.exceptions import CapacityDataReason, CapacityDataRejected
from triage.capacity.series import DailySeries, from_frame

NATIONAL_CSV = "dpc-covid19-ita-andamento-nazionale.csv"
REGIONAL_CSV = "dpc-covid19-ita-regioni-concat.csv.gz"
ITALY = "Italia"

POPULATION = {
    ITALY: 59_641_000,
    "Abruzzo": 1_294_000,
    "Basilicata": 553_000,
    "Calabria": 1_894_000,
    "Campania": 5_712_000,
    "Emilia-Romagna": 4_464_000,
    "Friuli Venezia Giulia": 1_206_000,
    "Lazio": 5_756_000,
    "Liguria": 1_525_000,
    "Lombardia": 10_028_000,
    "Marche": 1_513_000,
    "Molise": 301_000,
    "P.A. Bolzano": 533_000,
    "P.A. Trento": 545_000,
    "Piemonte": 4_311_000,
    "Puglia": 3_953_000,
    "Sardegna": 1_612_000,
    "Sicilia": 4_875_000,
    "Toscana": 3_693_000,
    "Umbria": 870_000,
    "Valle d'Aosta": 125_000,
    "Veneto": 4_879_000,
}

_COLUMNS = {
    "data": "date",
    "terapia_intensiva": "icu_occupancy",
    "ingressi_terapia_intensiva": "icu_admissions",
    "totale_ospedalizzati": "hospital_occupancy",
}


def standard_frame(folder: Path, region: str = ITALY) -> pd.DataFrame:
    """The national (``Italia``) or one region's series with the standard column names."""
    if region == ITALY:
        raw = pd.read_csv(folder / NATIONAL_CSV)
    else:
        raw = pd.read_csv(folder / REGIONAL_CSV)
        raw = raw[raw["denominazione_regione"] == region]
        if raw.empty:
            raise CapacityDataRejected(
                CapacityDataReason.UNKNOWN_REGION, f"{region!r} (known: {sorted(POPULATION)})"
            )
    frame = raw[list(_COLUMNS)].rename(columns=_COLUMNS)
    frame["date"] = frame["date"].astype(str).str[:10]
    return frame.reset_index(drop=True)


def load(folder: Path, region: str = ITALY) -> DailySeries:
    """The DPC series of ``region`` as a validated daily series."""
    return from_frame(standard_frame(folder, region), region)
