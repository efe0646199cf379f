"""Model-card pieces shared by the risk trainers: feature codes, outcome definitions, labels.

Every model feature is listed in the card with its unit and its codes: LOINC for age, sex,
vitals and labs, SNOMED CT (+ WHO ICD-10) for conditions, SNOMED CT body structure + property
for volumes, and the project's local DICOM coding scheme ``99CTRIAGE`` for the lung-percentage
biomarkers (no standard code exists; the same codes are written in the DICOM SR).
"""

from __future__ import annotations

from typing import Any

import xgboost as xgb

from triage.fhir.codes import (
    CONDITION_VALUE_SETS,
    OBSERVATION_DEFINITIONS,
    CodeSystem,
    ConditionKey,
)
from triage.fhir.features import FEATURE_UNITS, FEATURES, IMAGING_FEATURES
from triage.risk import robust, semisynthetic

REAL_LABEL = (
    "REAL DATA: clinical-only model (age, sex, comorbidities, pneumonia) trained and tested on "
    "the Mexico open case file (Secretaria de Salud, 2020-05-27)"
)
LOCAL_SCHEME = "99CTRIAGE"

#: card name -> (outcome column of the Mexico cohort, what it means)
OUTCOME_MODELS: dict[str, tuple[str, str]] = {
    "ventilation": (
        "intubation",
        "invasive mechanical ventilation: intubated during the stay (Mexico INTUBADO = 1; "
        "outpatients count as not intubated)",
    ),
    "icu": ("icu", "ICU admission (Mexico UCI = 1; outpatients count as not admitted)"),
    "death": ("death", "death within 21 days of admission (Mexico FECHA_DEF)"),
}
PRIMARY_MODEL = "ventilation"
LIMITATIONS: tuple[str, ...] = (
    "Mexico 2020 first wave: one country, one case definition, outcomes as reported by "
    "the snapshot (no dates for intubation or ICU)",
    "no vitals, labs or cancer flag in the training data: the model ignores them",
    "has_pneumonia comes from a pneumonia Condition only and is missing (never 0) until "
    "one arrives; training withheld it from 30 % of rows so a missing flag reads as unknown",
    "asthma and smoking are ignored (registry artefacts of the Mexico file)",
    "a withheld field still moves the mean risk (up to +37 %, docs/risk-validation.md)",
    "external validation (docs/risk-validation.md): better than age alone on 3 of 4 "
    "cohort-outcomes, 0.019-0.091 AUC below the cohorts' own ceilings, poorly calibrated "
    "out of the box: recalibrate on a site's outcomes (ctriage risk recalibrate) before use",
    "imaging effect sizes are assumptions from two single-centre studies (fused model); "
    "the drawn biomarkers pass through the lesion model's measured error first",
)
CLINICAL_SUFFIX = "_clinical"
#: the output column of ``ctriage risk score`` for each card name
RISK_COLUMNS: dict[str, str] = {name: f"risk_{name}" for name in OUTCOME_MODELS}


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _condition_codes(key: ConditionKey) -> list[dict[str, str]]:
    return [c.as_fhir() for c in CONDITION_VALUE_SETS[key].primary_codings]


def feature_codes() -> dict[str, list[dict[str, str]]]:
    """Feature name -> its codings (see the module docstring)."""
    sct, loinc = CodeSystem.SNOMED_CT.value, CodeSystem.LOINC.value
    volume = _coding(sct, "118565006", "Volume")
    codes: dict[str, list[dict[str, str]]] = {
        "lung_volume_ml": [_coding(sct, "39607008", "Lung structure"), volume],
        "lesion_volume_ml": [_coding(sct, "52988006", "Lesion"), volume],
        "lesion_percent": [_coding(LOCAL_SCHEME, "LESION-PCT", "Lesion percent of lung")],
        "ggo_percent": [_coding(LOCAL_SCHEME, "GGO-PCT", "Ground-glass percent of lung")],
        "consolidation_percent": [
            _coding(LOCAL_SCHEME, "CONS-PCT", "Consolidation percent of lung")
        ],
        "well_aerated_percent": [
            _coding(LOCAL_SCHEME, "AERATED-PCT", "Well-aerated percent of lung")
        ],
        "age_years": [_coding(loinc, "30525-0", "Age")],
        "sex_male": [_coding(loinc, "46098-0", "Sex")],
        "has_pneumonia": [
            _coding(sct, "233604007", "Pneumonia"),
            _coding(CodeSystem.ICD_10.value, "J12-J18", "Pneumonia (ICD-10 block)"),
        ],
    }
    for key in ConditionKey:
        codes[f"has_{key.value}"] = _condition_codes(key)
    for definition in OBSERVATION_DEFINITIONS.values():
        codes[definition.feature] = [definition.loinc[0].as_fhir()]
    return codes


def feature_table(used: set[str] | None = None) -> list[dict[str, Any]]:
    """The card's ``features`` list in :data:`FEATURES` order (name, unit, codes, used)."""
    codes = feature_codes()
    table = []
    for name in FEATURES:
        entry: dict[str, Any] = {"name": name, "unit": FEATURE_UNITS[name]}
        entry["codes"] = codes.get(name, [])
        if used is not None:
            entry["in_training_data"] = name in used
        table.append(entry)
    return table


def _metrics(
    label: str,
    per_split: dict[str, Any],
    by_split: dict[str, Any],
    bootstrap_replicates: int,
    kind: str,
) -> dict[str, Any]:
    primary = per_split.get("random", next(iter(per_split.values())))[kind]
    return {
        "label": label,
        "labels": {
            "model": label,
            "real_clinical_model": REAL_LABEL,
            "baselines": "REAL for age_alone, comorbidity_count, logistic_clinical; "
            "SEMI-SYNTHETIC for logistic_fused (uses the drawn imaging biomarkers)",
        },
        "split": per_split.get("random", {}).get("split"),
        "auc": primary["auc"],
        "auc_ci95": primary["auc_ci95"],
        "brier": primary["brier"],
        "calibration_error": primary["ece"],
        "at_policy_thresholds": [primary["at_sensitivity_80"]],
        "bootstrap_replicates": bootstrap_replicates,
        "by_split": by_split,
    }


def build_card(
    artifact: str,
    name: str,
    kind: str,
    *,
    calibration: dict[str, Any],
    operating_points: list[dict[str, Any]],
    per_split: dict[str, Any],
    summary: dict[str, Any],
    params: dict[str, Any],
) -> dict[str, Any]:
    """The card of one Mexico-trained artifact (``kind`` ``fused`` or ``clinical``).

    ``version`` is left empty: the caller hashes the model bytes with the calibration map.
    Metrics of the fused model are labelled SEMI-SYNTHETIC; the clinical model's and the
    clinical baselines' are REAL; both appear in every card, each with its label.
    """
    outcome, description = OUTCOME_MODELS[name]
    fused = kind == "fused"
    label = semisynthetic.LABEL if fused else REAL_LABEL
    data = summary["training_data"]
    used = {"age_years", "sex_male", *data["feature_columns"]} - set(robust.DROPPED_FEATURES)
    if fused:
        used |= set(IMAGING_FEATURES)
    by_split = {}
    for split_name, result in per_split.items():
        entry = {"split": result["split"], "model": result[kind], "baselines": result["baselines"]}
        if fused:
            entry["real_clinical_model"] = result["clinical"]
        by_split[split_name] = entry
    training_data = {**data, "semi_synthetic_imaging": fused}
    if fused:
        training_data["imaging_scheme"] = {
            **semisynthetic.SCHEME,
            "seed": summary["seed"],
            "achieved_odds_ratios": summary["semi_synthetic_odds_ratios"],
        }
    return {
        "name": artifact,
        "version": "",
        "format": "xgboost universal binary JSON (.ubj) + isotonic calibration in this card",
        "xgboost_version": xgb.__version__,
        "target": outcome,
        "target_description": description,
        "outcome_model": name,
        "kind": kind,
        "features": feature_table(used),
        "missing_values": "passed to XGBoost as missing (NaN); never imputed",
        "training_data": training_data,
        "pneumonia_withheld_fraction": summary["pneumonia_withheld_fraction"],
        "history_withheld_fraction": summary["history_withheld_fraction"],
        "field_withheld_fraction": summary["field_withheld_fraction"],
        "withheld_why": "training rows with the pneumonia flag, all comorbidity flags together "
        "and each clinical field on its own set missing at random, so that a missing field "
        "means 'not recorded' (the stream knows pneumonia only once a Condition arrives; a site "
        "may not record a field at all), not the case file's 'se ignora'",
        "robustness": robust.card_block(name),
        "seed": summary["seed"],
        "params": params,
        "calibration": {
            **calibration,
            "fitted_on": "calibration rows of the random split (never used for fitting); maps "
            "the raw XGBoost probability to the returned one, linearly between points",
        },
        "metrics": _metrics(label, per_split, by_split, summary["bootstrap_replicates"], kind),
        "operating_points_label": f"{label}; held-out random split, calibrated probabilities",
        "operating_points": operating_points,
        "limitations": list(LIMITATIONS),
    }
