"""The Mexico open COVID-19 case file (Secretaria de Salud, snapshot 2020-05-27) as a cohort.

REAL data: ``../shared/data/clinical/mexico-ssa-2020-05-27/20200527.csv.gz`` (latin-1 CSV,
gzip) with its code catalogues in ``catalogos/``. One row per person tested.

Decisions (also written into every model card by :func:`cohort_description`):

- **cohort**: laboratory-confirmed positives, ``RESULTADO`` = 1 ("Positivo SARS-CoV-2"; the
  catalogue ``resultado.csv`` is read and checked, not assumed), admitted (``FECHA_INGRESO``) at
  least ``follow_up_days`` before the snapshot date so that every outcome had time to happen
  and be reported: the last weeks of the file show reporting lag (death rate 17 % in April
  admissions, 4 % in the week before the snapshot).
- **codes** (catalogue ``si_no.csv``): 1 = yes, 2 = no, 97 / 98 / 99 (not applicable /
  ignored / not specified) = missing (NaN, never imputed). ``SEXO`` 1 = female, 2 = male.
- **outcomes**: ``intubation`` = ``INTUBADO`` 1; ``icu`` = ``UCI`` 1. Both are 97 (not
  applicable) for every outpatient (``TIPO_PACIENTE`` 1): an outpatient sent home was neither
  intubated nor admitted to ICU at that unit, so 97 counts as **no**; a hospitalised patient
  with 98/99 has an unknown outcome and is left out of that outcome's model only.
  ``death`` = ``FECHA_DEF`` (9999-99-99 = alive) within ``follow_up_days`` of admission; a
  death dated before admission is a data error and that row is excluded.
- **features**: ``EDAD`` (years), ``SEXO``, ten comorbidity flags and ``NEUMONIA``; the file
  has no cancer flag (``has_cancer`` stays NaN), no vitals, labs or imaging.
  ``TIPO_PACIENTE`` (the decision to admit) is NOT a feature: it follows the assessment the
  model is meant to support, and every intubated patient is hospitalised by definition.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from triage.exceptions import TrainingDataError, TrainingDataReason

logger = logging.getLogger(__name__)

CASE_FILE = "20200527.csv.gz"
SNAPSHOT = date(2020, 5, 27)
FOLLOW_UP_DAYS = 21
ENCODING = "latin-1"
ALIVE = "9999-99-99"
YES, NO = 1, 2
POSITIVE = 1

#: model feature -> column of the case file (1 yes / 2 no / 97-99 missing)
FLAG_COLUMNS: dict[str, str] = {
    "has_diabetes": "DIABETES",
    "has_hypertension": "HIPERTENSION",
    "has_cardiovascular": "CARDIOVASCULAR",
    "has_copd": "EPOC",
    "has_asthma": "ASMA",
    "has_ckd": "RENAL_CRONICA",
    "has_obesity": "OBESIDAD",
    "has_immunosuppression": "INMUSUPR",
    "has_smoking": "TABAQUISMO",
    "has_pneumonia": "NEUMONIA",
}
COMORBIDITY_FEATURES: tuple[str, ...] = tuple(f for f in FLAG_COLUMNS if f != "has_pneumonia")
OUTCOMES: tuple[str, ...] = ("intubation", "icu", "death")
_NEEDED = (
    "FECHA_INGRESO",
    "FECHA_DEF",
    "TIPO_PACIENTE",
    "INTUBADO",
    "UCI",
    "EDAD",
    "SEXO",
    "RESULTADO",
    *FLAG_COLUMNS.values(),
)


@dataclass(frozen=True)
class MexicoCohort:
    """Features (model names, NaN = missing), outcomes (0/1, NaN = unknown) and admission dates."""

    features: pd.DataFrame
    outcomes: pd.DataFrame
    admitted: pd.Series
    hospitalised: np.ndarray
    sha256: str
    source: str
    follow_up_days: int
    counts: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.features)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (the training data hash in the model card)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_catalogue(folder: Path, name: str) -> dict[int, str]:
    """A code catalogue (``catalogos/<name>.csv``: CLAVE, DESCRIPCION) as code -> description."""
    path = Path(folder) / "catalogos" / f"{name}.csv"
    try:
        with path.open(encoding=ENCODING, newline="") as handle:
            return {int(row["CLAVE"]): row["DESCRIPCION"].strip() for row in csv.DictReader(handle)}
    except (OSError, KeyError, ValueError) as e:
        raise TrainingDataError(TrainingDataReason.MISSING_FILE, f"catalogue {path}: {e}") from e


def check_catalogues(folder: Path) -> None:
    """Refuse a case file whose catalogues do not say what this loader assumes."""
    expected = {
        "resultado": {POSITIVE: "positivo sars-cov-2"},
        "si_no": {YES: "si", NO: "no"},
        "sexo": {1: "mujer", 2: "hombre"},
        "tipo_paciente": {1: "ambulatorio", 2: "hospitalizado"},
    }
    for name, codes in expected.items():
        catalogue = read_catalogue(folder, name)
        for code, description in codes.items():
            if catalogue.get(code, "").lower() != description:
                raise TrainingDataError(
                    TrainingDataReason.INVALID_MANIFEST,
                    f"catalogue {name}: code {code} is {catalogue.get(code)!r}, "
                    f"expected {description!r}",
                )


def load_cohort(
    folder: Path,
    follow_up_days: int = FOLLOW_UP_DAYS,
    snapshot: date = SNAPSHOT,
    case_file: str = CASE_FILE,
) -> MexicoCohort:
    """Read the case file into a :class:`MexicoCohort` (decisions in the module docstring)."""
    folder = Path(folder)
    path = folder / case_file
    if not path.is_file():
        raise TrainingDataError(TrainingDataReason.MISSING_FILE, f"no case file at {path}")
    check_catalogues(folder)
    try:
        raw = pd.read_csv(path, encoding=ENCODING, dtype=str, usecols=list(_NEEDED))
    except (OSError, ValueError) as e:
        raise TrainingDataError(TrainingDataReason.INVALID_MANIFEST, f"{path}: {e}") from e
    counts = {"rows": len(raw)}
    result = pd.to_numeric(raw["RESULTADO"], errors="coerce")
    positive = raw[result == POSITIVE]
    counts["positive"] = len(positive)
    admitted = pd.to_datetime(positive["FECHA_INGRESO"], format="%Y-%m-%d", errors="coerce")
    last_admission = pd.Timestamp(snapshot - timedelta(days=follow_up_days))
    in_window = admitted.notna() & (admitted <= last_admission)
    counts["excluded_admitted_within_follow_up"] = int((~in_window).sum())
    positive, admitted = positive[in_window], admitted[in_window]
    died_raw = positive["FECHA_DEF"].str.strip()
    died_at = pd.to_datetime(died_raw.where(died_raw != ALIVE), format="%Y-%m-%d", errors="coerce")
    delay = (died_at - admitted).dt.days
    bad_death = died_at.notna() & (delay < 0)
    counts["excluded_death_before_admission"] = int(bad_death.sum())
    positive, admitted, died_at, delay = (
        positive[~bad_death],
        admitted[~bad_death],
        died_at[~bad_death],
        delay[~bad_death],
    )
    features = pd.DataFrame(index=positive.index)
    age = pd.to_numeric(positive["EDAD"], errors="coerce")
    features["age_years"] = age.where((age >= 0) & (age <= 120))
    sex = pd.to_numeric(positive["SEXO"], errors="coerce")
    features["sex_male"] = np.select([sex == 2, sex == 1], [1.0, 0.0], np.nan)
    for name, column in FLAG_COLUMNS.items():
        features[name] = _flag(positive[column])
    outpatient = pd.to_numeric(positive["TIPO_PACIENTE"], errors="coerce") == 1
    outcomes = pd.DataFrame(index=positive.index)
    for name, column in (("intubation", "INTUBADO"), ("icu", "UCI")):
        flag = _flag(positive[column])
        outcomes[name] = np.where(outpatient, 0.0, flag)
        counts[f"unknown_{name}"] = int(np.isnan(outcomes[name]).sum())
    outcomes["death"] = (died_at.notna() & (delay <= follow_up_days)).astype(float)
    counts["cohort"] = len(features)
    for name in OUTCOMES:
        counts[f"positive_{name}"] = int(np.nansum(outcomes[name]))
    logger.info("Mexico cohort: %s", counts)
    return MexicoCohort(
        features=features.reset_index(drop=True),
        outcomes=outcomes.reset_index(drop=True),
        admitted=admitted.reset_index(drop=True),
        hospitalised=(~outpatient).to_numpy(),
        sha256=file_sha256(path),
        source=str(path),
        follow_up_days=follow_up_days,
        counts=counts,
    )


def cohort_description(cohort: MexicoCohort) -> dict[str, Any]:
    """The training-data block of a model card: source, hash, definitions and counts."""
    return {
        "synthetic": False,
        "real": "Mexico Secretaria de Salud open COVID-19 case file, snapshot 2020-05-27 "
        "(mayrop/covid19mx @ fcb18a1a: www/abiertos/todos/202005/20200527.zip)",
        "file": Path(cohort.source).name,
        "sha256": cohort.sha256,
        "cohort": f"RESULTADO = 1 (confirmed SARS-CoV-2), admitted >= {cohort.follow_up_days} "
        f"days before the snapshot ({SNAPSHOT.isoformat()})",
        "outcomes": {
            "intubation": "INTUBADO = 1; outpatients (TIPO_PACIENTE = 1, INTUBADO = 97) = 0; "
            "hospitalised with 98/99 = unknown (left out)",
            "icu": "UCI = 1; outpatients = 0; hospitalised with 98/99 = unknown (left out)",
            "death": f"FECHA_DEF within {cohort.follow_up_days} days of FECHA_INGRESO",
        },
        "feature_columns": {"age_years": "EDAD", "sex_male": "SEXO (2 = male)", **FLAG_COLUMNS},
        "missing": "97/98/99 -> NaN (passed to XGBoost as missing, never imputed); "
        "has_cancer and all vitals, labs are absent from the file",
        "not_used": "TIPO_PACIENTE (admission decision), dates, geography, nationality",
        "counts": dict(cohort.counts),
    }


def _flag(column: pd.Series) -> np.ndarray:
    """1 -> 1.0, 2 -> 0.0, anything else (97, 98, 99, blank) -> NaN."""
    values = pd.to_numeric(column, errors="coerce").to_numpy()
    return np.select([values == YES, values == NO], [1.0, 0.0], np.nan)
