"""The REAL external cohorts of ``../shared/data/clinical/`` as ``ctriage risk validate`` tables.

Each reader returns an :class:`ExternalCohort`: one row per patient in the columns of a scoring
CSV (``age``, ``sex``, 0/1 flags, observations by feature name in canonical units), an optional
``comorbidity_count`` and the outcome columns it has (``icu``, ``death``), plus the mapping
decisions. The mappings were fixed from each cohort's documentation before any model was
scored on it (docs/risk-validation.md); a field a cohort does not record stays absent (empty),
never 0.

- **netherlands-hosp** (RIVM, 22,224 hospitalised): ``Age_cat`` -> band midpoint (``<=50`` ->
  40, ``>90`` -> 93); ``Sex_m`` 1 = male (COLUMNS.md: the code and 59 % share say male, the
  comment says female); ``N_Comorbidities`` is kept as the count, and a count of 0 means every
  medical condition is recorded as absent (diabetes, hypertension, cardiovascular, COPD, asthma,
  CKD, immunosuppression, cancer = 0; obesity and smoking are not medical conditions in that
  count and stay unrecorded); a count of 1-3 leaves the conditions unrecorded (which ones is
  not said). Outcomes: ``ICU``, ``Death`` (28 days).
- **sirio-libanes-icu** (Sao Paulo, 385 patients x 5 windows): the first window (0-2 h) is the
  triage moment; patients already in ICU in it are left out (their outcome is known); ``icu`` =
  ICU in any later window. Age is given only as a cohort percentile band: mapped to years
  anchored on ``AGE_ABOVE65`` (the 60th band holds the 65th birthday) in 7-year steps.
  ``GENDER``'s coding is undocumented, so sex stays unrecorded. ``HTN`` -> hypertension,
  ``IMMUNOCOMPROMISED`` -> immunosuppression. Vitals and labs are min-max scaled to [-1, 1]
  without their ranges, so they cannot be put in units: not mapped.
- **wuhan-tongji** (Yan et al. 2020, the 375-patient training file; the 110-patient file has no
  age or sex): ``gender`` 1 = male (the paper's 224 men); first recorded value of LDH (U/L),
  hs-CRP (mg/L), lymphocyte count (10^9/L = 10^3/uL) and D-dimer (ug/mL FEU, x 1000 ->
  ng/mL FEU). ``outcome`` 1 = death.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from triage.exceptions import TrainingDataError, TrainingDataReason
from triage.risk.mexico import file_sha256
from triage.risk.xlsx import read_first_sheet

MEDICAL_CONDITIONS: tuple[str, ...] = (
    "diabetes", "hypertension", "cardiovascular", "copd", "asthma", "ckd",
    "immunosuppression", "cancer",
)  # fmt: skip
NETHERLANDS_AGE_YEARS: dict[str, float] = {
    "<=50": 40.0, "50-59": 55.0, "60-69": 65.0, "70-79": 75.0, "80-89": 85.0, ">90": 93.0,
}  # fmt: skip
SIRIO_AGE_YEARS: dict[str, float] = {
    band: 66.0 + 7.0 * (k - 5)
    for k, band in enumerate(
        ("10th", "20th", "30th", "40th", "50th", "60th", "70th", "80th", "90th", "Above 90th")
    )
}
#: Tongji column -> (feature, factor to the canonical unit)
WUHAN_LABS: dict[str, tuple[str, float]] = {
    "Lactate dehydrogenase": ("ldh_u_per_l", 1.0),
    "High sensitivity C-reactive protein": ("crp_mg_per_l", 1.0),
    "lymphocyte count": ("lymphocytes_10e3_per_ul", 1.0),
    "D-D dimer": ("d_dimer_ng_per_ml_feu", 1000.0),
}


@dataclass(frozen=True)
class ExternalCohort:
    """A REAL cohort as a validation table (scoring-CSV columns + outcomes) and its provenance."""

    name: str
    table: pd.DataFrame
    outcomes: tuple[str, ...]
    source: str
    sha256: str
    mapping: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def rows(self) -> list[dict[str, str]]:
        """The table as CSV-like rows (strings; empty = not recorded)."""
        text = self.table.astype(object).where(self.table.notna(), "")
        return [{k: _cell(v) for k, v in row.items()} for row in text.to_dict("records")]

    def write_csv(self, path: Path) -> Path:
        """Write the table as a ``ctriage risk validate`` CSV."""
        pd.DataFrame(self.rows()).to_csv(path, index=False)
        return Path(path)

    def describe(self) -> dict[str, Any]:
        """Provenance and mapping for a model card or a validation report."""
        return {
            "cohort": self.name,
            "source": self.source,
            "sha256": self.sha256,
            "outcomes": list(self.outcomes),
            "mapping": dict(self.mapping),
            "counts": dict(self.counts),
        }


def netherlands(folder: Path) -> ExternalCohort:
    """The Dutch hospitalised cohort (see the module docstring)."""
    path = _require(Path(folder) / "datahosp.csv.gz")
    raw = pd.read_csv(path)
    unknown = set(raw["Age_cat"].dropna()) - set(NETHERLANDS_AGE_YEARS)
    if unknown or set(raw["Sex_m"].dropna()) - {0, 1}:
        raise TrainingDataError(
            TrainingDataReason.INVALID_MANIFEST, f"{path}: unexpected codes {sorted(unknown)}"
        )
    table = pd.DataFrame({"age": raw["Age_cat"].map(NETHERLANDS_AGE_YEARS)})
    table["sex"] = raw["Sex_m"].map({1: "M", 0: "F"})
    count = raw["N_Comorbidities"]
    for condition in MEDICAL_CONDITIONS:
        table[condition] = np.where(count == 0, 0.0, np.nan)
    table["comorbidity_count"] = count
    table["icu"] = raw["ICU"]
    table["death"] = raw["Death"]
    return ExternalCohort(
        name="netherlands-hosp",
        table=table,
        outcomes=("icu", "death"),
        source=str(path),
        sha256=file_sha256(path),
        mapping={
            "age": "Age_cat band midpoint (<=50 -> 40, >90 -> 93)",
            "sex": "Sex_m 1 = male (COLUMNS.md: code and data say male; comment says female)",
            "conditions": "N_Comorbidities 0 -> the eight medical conditions recorded as 0; "
            "1-3 -> not recorded; obesity, smoking never recorded",
            "comorbidity_count": "N_Comorbidities (0-3, capped)",
            "outcomes": "ICU (admission), Death (28 days)",
        },
        counts={"rows": len(table)},
    )


def sirio_libanes(folder: Path) -> ExternalCohort:
    """The Sirio-Libanes ICU cohort, first window (see the module docstring)."""
    path = _require(Path(folder) / "Kaggle_Sirio_Libanes_ICU_Prediction.xlsx")
    raw = read_first_sheet(path)
    ever = raw.groupby("PATIENT_VISIT_IDENTIFIER")["ICU"].max()
    first = raw[raw["WINDOW"] == "0-2"].set_index("PATIENT_VISIT_IDENTIFIER")
    already = first["ICU"] == 1
    first = first[~already]
    table = pd.DataFrame(index=first.index)
    table["age"] = first["AGE_PERCENTIL"].map(SIRIO_AGE_YEARS)
    table["hypertension"] = first["HTN"]
    table["immunosuppression"] = first["IMMUNOCOMPROMISED"]
    table["icu"] = ever.loc[first.index]
    return ExternalCohort(
        name="sirio-libanes-icu",
        table=table.reset_index(drop=True),
        outcomes=("icu",),
        source=str(path),
        sha256=file_sha256(path),
        mapping={
            "rows": "window 0-2 of each patient; patients in ICU during it left out",
            "age": "AGE_PERCENTIL band -> years, 60th band = 66, 7-year steps (assumption)",
            "sex": "GENDER coding undocumented: not recorded",
            "conditions": "HTN -> hypertension, IMMUNOCOMPROMISED -> immunosuppression; "
            "DISEASE GROUPING 1-6 undocumented: not used",
            "vitals_labs": "min-max scaled without ranges: not mapped",
            "outcomes": "icu = ICU in any window after the first",
        },
        counts={"patients": int(len(ever)), "in_icu_at_first_window": int(already.sum())},
    )


def wuhan_tongji(folder: Path) -> ExternalCohort:
    """The Tongji cohort of Yan et al., 375 patients (see the module docstring)."""
    path = _require(Path(folder) / "time_series_375_prerpocess_en.xlsx")
    raw = read_first_sheet(path)
    raw["PATIENT_ID"] = raw["PATIENT_ID"].ffill()
    raw = raw.sort_values(["PATIENT_ID", "RE_DATE"], kind="stable")
    patients = raw.groupby("PATIENT_ID", sort=True)
    table = pd.DataFrame({"age": patients["age"].first()})
    table["sex"] = patients["gender"].first().map({1.0: "M", 2.0: "F"})
    for column, (feature, factor) in WUHAN_LABS.items():
        table[feature] = patients[column].first() * factor
    table["death"] = patients["outcome"].first()
    return ExternalCohort(
        name="wuhan-tongji",
        table=table.reset_index(drop=True),
        outcomes=("death",),
        source=str(path),
        sha256=file_sha256(path),
        mapping={
            "rows": "PATIENT_ID forward-filled; one row per patient",
            "sex": "gender 1 = male, 2 = female (Yan et al.: 224 men of 375)",
            "labs": "first recorded LDH, hs-CRP, lymphocyte count, D-dimer (x1000 to ng/mL FEU)",
            "outcomes": "outcome 1 = death",
        },
        counts={"patients": len(table)},
    )


#: folder name under ``clinical/`` -> reader
READERS: dict[str, Callable[[Path], ExternalCohort]] = {
    "netherlands-hosp": netherlands,
    "sirio-libanes-icu": sirio_libanes,
    "wuhan-tongji": wuhan_tongji,
}


def load_external(clinical_dir: Path) -> dict[str, ExternalCohort]:
    """Every external cohort found under ``clinical_dir`` (``../shared/data/clinical``)."""
    return {
        name: reader(Path(clinical_dir) / name)
        for name, reader in READERS.items()
        if (Path(clinical_dir) / name).is_dir()
    }


def _require(path: Path) -> Path:
    if not path.is_file():
        raise TrainingDataError(TrainingDataReason.MISSING_FILE, f"no cohort file at {path}")
    return path


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}" if not value.is_integer() else str(int(value))
    return str(value)
