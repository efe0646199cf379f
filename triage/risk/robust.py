"""What the shipped risk models may learn from the Mexico case file, and how they learn "unknown".

Decided on the Mexico training rows only (adjusted logistic regressions of each outcome on age,
sex, the comorbidity flags and pneumonia; docs/risk-validation.md) before any external cohort
was scored:

- **dropped as registry artefacts**: asthma and smoking. Their adjusted direction for death
  (the outcome least shaped by care decisions) is null or protective (log-OR +0.00 and -0.07),
  against the clinical literature; a model carrying them tells another hospital that asthma
  "lowers" risk. They are withheld from every training row, so the model never splits on them
  and never explains with them.
- **monotone where medicine is clear**: each kept comorbidity, pneumonia and male sex can only
  raise risk; age can only raise the risk of ventilation and death. ICU admission is a care
  decision as well as a severity marker (frail old patients are often not admitted), so age is
  left free for the ICU model. The same constraints turn the Mexico file's protective COPD and
  immunosuppression effects on intubation / ICU (care limitation, not biology) into "no effect".
- **unknown is expected**: every clinical field is withheld independently at random from
  :data:`FIELD_WITHHELD` of the training rows (on top of the pneumonia flag at 30 % and the
  whole history at 30 %), so that a field a site does not record falls into a branch that
  learned the average over that field, not the case file's "se ignora" (which marks sicker
  patients).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from triage.fhir.features import FEATURES
from triage.risk.marginal import Background
from triage.risk.mexico import COMORBIDITY_FEATURES

DROPPED_FEATURES: tuple[str, ...] = ("has_asthma", "has_smoking")
DROPPED_WHY = (
    "registry artefact: adjusted log-OR for death in the Mexico training rows +0.00 (asthma) "
    "and -0.07 (smoking), protective for intubation (asthma -0.42); not carried to other sites"
)
PNEUMONIA_WITHHELD = 0.3
HISTORY_WITHHELD = 0.3
FIELD_WITHHELD = 0.1
KEPT_COMORBIDITIES: tuple[str, ...] = tuple(
    f for f in COMORBIDITY_FEATURES if f not in DROPPED_FEATURES
)
CLINICAL_FIELDS: tuple[str, ...] = ("age_years", "sex_male", *KEPT_COMORBIDITIES, "has_pneumonia")
#: Fields averaged over reference patients when a site does not record them.
MARGINALISED_FIELDS: tuple[str, ...] = ("age_years", "sex_male", *KEPT_COMORBIDITIES)
#: Imaging biomarkers may only push risk one way (more lesion: higher; more well-aerated lung:
#: lower): clinically expected, and it keeps the model sane on biomarker mixes the draw missed.
IMAGING_MONOTONE: dict[str, int] = {
    "lesion_volume_ml": 1,
    "lesion_percent": 1,
    "ggo_percent": 1,
    "consolidation_percent": 1,
    "well_aerated_percent": -1,
}
CLINICAL_MONOTONE: dict[str, int] = {
    "sex_male": 1,
    **dict.fromkeys(KEPT_COMORBIDITIES, 1),
    "has_pneumonia": 1,
}
#: outcome model -> age constraint (ICU admission is partly a care decision: left free)
AGE_MONOTONE: dict[str, int] = {"ventilation": 1, "icu": 0, "death": 1}


def monotone_constraints(outcome_model: str) -> dict[str, int]:
    """Feature -> +1 / -1 for the model of one outcome (features left out are free)."""
    constraints = {**IMAGING_MONOTONE, **CLINICAL_MONOTONE}
    if AGE_MONOTONE.get(outcome_model, 0):
        constraints["age_years"] = AGE_MONOTONE[outcome_model]
    return constraints


def constraint_string(constraints: dict[str, int]) -> str:
    """XGBoost's ``monotone_constraints`` tuple in :data:`FEATURES` order."""
    return "(" + ",".join(str(constraints.get(f, 0)) for f in FEATURES) + ")"


def withhold(matrix: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``matrix`` with the dropped features gone and fields withheld among ``rows``."""
    x = matrix.copy()
    x[:, [FEATURES.index(f) for f in DROPPED_FEATURES]] = np.nan
    x[rows[rng.random(len(rows)) < PNEUMONIA_WITHHELD], FEATURES.index("has_pneumonia")] = np.nan
    history = np.array([FEATURES.index(f) for f in KEPT_COMORBIDITIES])
    x[np.ix_(rows[rng.random(len(rows)) < HISTORY_WITHHELD], history)] = np.nan
    for name in CLINICAL_FIELDS:
        x[rows[rng.random(len(rows)) < FIELD_WITHHELD], FEATURES.index(name)] = np.nan
    return x


def background(matrix: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> Background:
    """The reference patients unrecorded fields are averaged over (:mod:`triage.risk.marginal`).

    Drawn from ``rows`` (the fitting rows) that record age, sex and every kept comorbidity; the
    pneumonia flag is left to the model's learned missing branch.
    """
    return Background.draw(matrix, rows, MARGINALISED_FIELDS, KEPT_COMORBIDITIES, rng)


def without_dropped(matrix: np.ndarray) -> np.ndarray:
    """A copy of ``matrix`` without the dropped features (what the model is scored on)."""
    x = matrix.copy()
    x[:, [FEATURES.index(f) for f in DROPPED_FEATURES]] = np.nan
    return x


def card_block(outcome_model: str) -> dict[str, Any]:
    """The robustness decisions, for a model card."""
    return {
        "dropped_features": list(DROPPED_FEATURES),
        "dropped_why": DROPPED_WHY,
        "monotone_constraints": monotone_constraints(outcome_model),
        "withheld_at_random": {
            "has_pneumonia": PNEUMONIA_WITHHELD,
            "whole_history": HISTORY_WITHHELD,
            "each_clinical_field": FIELD_WITHHELD,
        },
        "decided_on": "Mexico training rows only, before any external cohort was scored",
        "unrecorded_fields": (
            f"averaged over reference patients (card key 'marginalisation'): "
            f"{', '.join(MARGINALISED_FIELDS)}; decided on Mexico validation rows after the "
            "external cohorts had been scored once (docs/risk-validation.md, protocol step 5)"
        ),
    }
