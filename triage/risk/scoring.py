"""Score a table of patients with every outcome model (``ctriage risk score --csv --out``).

Input columns (any may be missing or empty; unknown columns are ignored and kept):

- ``age`` (years, 0-120), ``sex`` (``M``/``F``; ``male``/``female`` accepted);
- 0/1 flags ``diabetes, hypertension, cardiovascular, copd, asthma, ckd, obesity,
  immunosuppression, smoking, pneumonia`` (and ``cancer``);
- vitals and labs by their feature names in canonical units (e.g. ``spo2_percent``,
  ``crp_mg_per_l``), checked against the plausible ranges of ``triage/valuesets``;
- imaging biomarkers by name (``lung_volume_ml``, ``lesion_percent``, ...);
- ``comorbidity_count`` (a whole number): how many chronic conditions the patient has, for a
  site that records the number but not which; used only when no condition flag is given
  (unrecorded fields are averaged over reference patients with that many, 3 meaning 3 or more:
  :mod:`triage.risk.marginal`).

A row with all six imaging biomarkers is scored by the fused models (``model_kind`` ``fused``);
any other row by the clinical-only models trained on the same patients without imaging
(``clinical``, or ``clinical (imaging incomplete)`` when only some biomarkers were given: the
fused models never saw partial imaging, so their answer to it would be arbitrary).
A bad value (``age`` "abc", ``sex`` "X", flag 7, SpO2 140) rejects its row: the ``error``
column names each field and reason (closed list :class:`RowRejectionReason`) and the risk
columns stay empty. Nothing is imputed.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from triage.exceptions import ModelArtifactError, ModelArtifactReason
from triage.fhir.codes import OBSERVATION_DEFINITIONS
from triage.fhir.features import FEATURES, IMAGING_FEATURES, OBSERVATION_FEATURES
from triage.risk.card import CLINICAL_SUFFIX, OUTCOME_MODELS, PRIMARY_MODEL, RISK_COLUMNS
from triage.risk.model import COUNT_FEATURE, DirectionValues, RiskModel

MODELS_DIR = Path(__file__).parent / "models"
FLAGS: tuple[str, ...] = (
    "diabetes",
    "hypertension",
    "cardiovascular",
    "copd",
    "asthma",
    "ckd",
    "obesity",
    "immunosuppression",
    "smoking",
    "pneumonia",
    "cancer",
)
OUTPUT_COLUMNS: tuple[str, ...] = (
    *RISK_COLUMNS.values(),
    "model_kind",
    "top_features",
    "error",
)
TOP_K = 5
_SEX = {"m": 1.0, "male": 1.0, "f": 0.0, "female": 0.0}
_RANGES: dict[str, tuple[float, float]] = {
    "age_years": (0.0, 120.0),
    "lung_volume_ml": (0.0, 15000.0),
    "lesion_volume_ml": (0.0, 15000.0),
    **{name: (0.0, 100.0) for name in IMAGING_FEATURES if name.endswith("_percent")},
    **{
        d.feature: (d.plausible_min, d.plausible_max)
        for key, d in OBSERVATION_DEFINITIONS.items()
        if key in OBSERVATION_FEATURES
    },
}


class RowRejectionReason(StrEnum):
    """Why one input row was not scored (closed list)."""

    NOT_A_NUMBER = "not_a_number"
    OUT_OF_RANGE = "out_of_range"
    INVALID_SEX = "invalid_sex"
    INVALID_FLAG = "invalid_flag"
    INVALID_OUTCOME = "invalid_outcome"
    INVALID_COUNT = "invalid_count"


@dataclass(frozen=True)
class ScoreReport:
    """What one CSV run did."""

    rows: int
    scored: int
    rejected: int
    rejections: dict[str, int]


def parse_row(row: Mapping[str | None, object]) -> tuple[dict[str, float | None], list[str]]:
    """One CSV row -> the model's features (None = missing) and the list of errors."""
    values: dict[str, float | None] = dict.fromkeys(FEATURES)
    errors: list[str] = []
    cells = {str(k).strip().lower(): str(v).strip() for k, v in row.items() if k is not None}

    def fail(column: str, text: str, reason: RowRejectionReason) -> None:
        errors.append(f"{column}={text!r}: {reason.value}")

    if cells.get("sex"):
        sex = _SEX.get(cells["sex"].lower())
        if sex is None:
            fail("sex", cells["sex"], RowRejectionReason.INVALID_SEX)
        values["sex_male"] = sex
    for flag in FLAGS:
        text = cells.get(flag, "")
        if text:
            number = _number(text)
            if number not in (0.0, 1.0):
                fail(flag, text, RowRejectionReason.INVALID_FLAG)
            else:
                values[f"has_{flag}"] = number
    numeric = {"age": "age_years", **{name: name for name in _RANGES if name != "age_years"}}
    for column, feature in numeric.items():
        text = cells.get(column, "")
        if not text:
            continue
        number = _number(text)
        low, high = _RANGES[feature]
        if number is None:
            fail(column, text, RowRejectionReason.NOT_A_NUMBER)
        elif not low <= number <= high:
            fail(column, text, RowRejectionReason.OUT_OF_RANGE)
        else:
            values[feature] = number
    text = cells.get(COUNT_FEATURE, "")
    if text:
        number = _number(text)
        if number is None or number < 0 or not number.is_integer():
            fail(COUNT_FEATURE, text, RowRejectionReason.INVALID_COUNT)
        else:
            values[COUNT_FEATURE] = number
    return values, errors


class RiskPanel:
    """The fused and clinical-only model of every outcome, loaded and checked."""

    def __init__(self, fused: dict[str, RiskModel], clinical: dict[str, RiskModel]) -> None:
        self.fused = fused
        self.clinical = clinical

    @classmethod
    def load(cls, models_dir: Path = MODELS_DIR) -> RiskPanel:
        """Load ``<name>.ubj`` and ``<name>_clinical.ubj`` of every outcome in ``models_dir``."""
        models_dir = Path(models_dir)
        fused, clinical = {}, {}
        for name in OUTCOME_MODELS:
            fused[name] = RiskModel.load(models_dir / f"{name}.ubj")
            clinical[name] = RiskModel.load(models_dir / f"{name}{CLINICAL_SUFFIX}.ubj")
        if not fused:
            raise ModelArtifactError(ModelArtifactReason.MISSING_FILE, f"no models in {models_dir}")
        return cls(fused, clinical)

    def score_matrix(
        self, matrix: np.ndarray, kind: str, counts: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Risk column -> calibrated probabilities for the rows of ``matrix``.

        ``counts``: comorbidity counts per row (NaN unknown), used where no condition is named.
        """
        models = self.fused if kind == "fused" else self.clinical
        return {
            RISK_COLUMNS[name]: model.predict_proba(matrix, counts)
            for name, model in models.items()
        }

    def top_features(
        self, matrix: np.ndarray, kind: str, counts: np.ndarray | None = None
    ) -> list[str]:
        """JSON top contributions of the primary (ventilation) model, one string per row."""
        models = self.fused if kind == "fused" else self.clinical
        contribs = models[PRIMARY_MODEL].contributions(matrix, counts)[:, :-1]
        out = []
        for values, row in zip(matrix, contribs, strict=True):
            # a field the row does not record is never an explanation
            recorded = ~np.isnan(values)
            order = np.argsort(-np.where(recorded, np.abs(row), -1.0), kind="stable")[:TOP_K]
            top = [
                {
                    "feature": FEATURES[i],
                    "value": None if math.isnan(values[i]) else round(float(values[i]), 4),
                    "contribution": round(float(row[i]), 4),
                    "direction": (
                        DirectionValues.RAISES if row[i] > 0 else DirectionValues.LOWERS
                    ).value,
                }
                for i in order
                if row[i] != 0.0 and recorded[i]
            ]
            out.append(json.dumps(top, separators=(",", ":")))
        return out


def score_csv(in_path: Path, out_path: Path, panel: RiskPanel) -> ScoreReport:
    """Score every row of ``in_path`` and write ``out_path`` (input columns + outputs).

    Raises OSError / ValueError for an unreadable file or one without a header row.
    """
    with Path(in_path).open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            raise ValueError(f"{in_path}: no header row")
        header = [h for h in reader.fieldnames if h not in OUTPUT_COLUMNS]
        rows = list(reader)
    parsed = [parse_row(row) for row in rows]
    rejections: dict[str, int] = {}
    groups: dict[str, list[int]] = {"fused": [], "clinical": []}
    partial: set[int] = set()
    for i, (values, errors) in enumerate(parsed):
        rows[i] = {k: v for k, v in rows[i].items() if k in header}
        if errors:
            rows[i]["error"] = "; ".join(errors)
            for error in errors:
                reason = error.rsplit(": ", 1)[-1]
                rejections[reason] = rejections.get(reason, 0) + 1
            continue
        given = sum(values[name] is not None for name in IMAGING_FEATURES)
        groups["fused" if given == len(IMAGING_FEATURES) else "clinical"].append(i)
        if 0 < given < len(IMAGING_FEATURES):
            partial.add(i)
    for kind, index in groups.items():
        if not index:
            continue
        matrix = np.array(
            [[_nan(parsed[i][0][name]) for name in FEATURES] for i in index], dtype=np.float32
        )
        counts = np.array([_nan(parsed[i][0].get(COUNT_FEATURE)) for i in index])
        risks = panel.score_matrix(matrix, kind, counts)
        tops = panel.top_features(matrix, kind, counts)
        for j, i in enumerate(index):
            rows[i].update({column: f"{probs[j]:.4f}" for column, probs in risks.items()})
            shown = f"{kind} (imaging incomplete)" if i in partial else kind
            rows[i].update(model_kind=shown, top_features=tops[j], error="")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*header, *OUTPUT_COLUMNS], restval="")
        writer.writeheader()
        writer.writerows(rows)
    rejected = sum(1 for _, errors in parsed if errors)
    return ScoreReport(len(rows), len(rows) - rejected, rejected, rejections)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _nan(value: float | None) -> float:
    return math.nan if value is None else value
