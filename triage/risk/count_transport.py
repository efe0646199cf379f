"""What a comorbidity count means in two registries: the Dutch death gap to its ceiling.

Issue 13 asks the shipped model to come within 0.01 AUC of each cohort's own ceiling. On the
RIVM Netherlands cohort (age band, sex, ``N_Comorbidities``) death is 0.813 against 0.832. This
module measures where that gap is, by the validation's own code and rows:

- the cohort's death rate and the model's mean risk per comorbidity count (0, 1, 2, 3+);
- cross-validated logistic fits on the cohort: age bands alone, with the count, with sex and
  the count (the ceiling), and the model's logit with the count re-weighted on the cohort (how
  much of the gap is the weight of the count alone);
- the same death rate per count among hospitalised Mexico patients of the risk model's fitting
  rows (its eight recorded conditions), which is what the model learned a count to mean.

It reads the external outcomes, so it never feeds a model choice; it says why a model brought
from another registry cannot close the gap (the step from "no condition" to "one" is a property
of what a registry counts) and what a site's own outcomes would have to teach it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from triage.fhir.features import CONDITION_FEATURES, FEATURES
from triage.risk.cohorts import ExternalCohort
from triage.risk.evaluation import roc_auc
from triage.risk.marginal import COUNT_CAP
from triage.risk.mexico import MexicoCohort
from triage.risk.scoring import RiskPanel
from triage.risk.validation import out_of_fold, parse_table, score_table

#: Flags the Mexico file records (it has no cancer flag; smoking is a habit, not a condition)
MEXICO_CONDITIONS = tuple(
    name for name in CONDITION_FEATURES.values() if name not in ("has_cancer", "has_smoking")
)


def cross_validated_auc(design: np.ndarray, labels: np.ndarray, seed: int = 2020) -> float:
    """AUC of out-of-fold probabilities of a logistic regression on ``design`` (the ceiling's)."""
    return round(float(roc_auc(labels, out_of_fold(design, labels, seed)) or 0.0), 4)


def rates_by_count(count: np.ndarray, labels: np.ndarray, risk: np.ndarray | None = None) -> dict:
    """Rows, event rate (and mean model risk) per count 0 .. COUNT_CAP (the cap: that or more)."""
    capped = np.minimum(count, COUNT_CAP)
    out: dict[str, dict[str, float]] = {}
    for k in range(COUNT_CAP + 1):
        rows = capped == k
        entry = {"rows": int(rows.sum()), "death_rate": round(float(labels[rows].mean()), 3)}
        if risk is not None:
            entry["mean_model_risk"] = round(float(risk[rows].mean()), 3)
        out[str(k)] = entry
    return out


def dutch_death_gap(dutch: ExternalCohort, panel: RiskPanel) -> dict[str, Any]:
    """The Dutch death figures of the module docstring (the shipped models in ``panel``)."""
    table = parse_table(dutch.rows())
    if table.comorbidity_count is None:
        raise ValueError(f"{dutch.name} has no comorbidity_count column")
    labels = table.outcomes["death"]
    known = ~np.isnan(labels)
    y = labels[known]
    risk = np.clip(score_table(table, panel)[0]["risk_death"][known], 1e-6, 1 - 1e-6)
    matrix = table.matrix[known]
    age = matrix[:, FEATURES.index("age_years")]
    sex = matrix[:, FEATURES.index("sex_male")]
    count = table.comorbidity_count[known]
    bands = (age[:, None] == np.unique(age)[None, 1:]).astype(float)
    logit = np.log(risk / (1 - risk))
    return {
        "rows": int(known.sum()),
        "events": int(y.sum()),
        "model_auc": round(float(roc_auc(y, risk) or 0.0), 4),
        "cv_auc": {
            "age_bands": cross_validated_auc(bands, y),
            "age_bands_count": cross_validated_auc(np.column_stack([bands, count]), y),
            "age_bands_sex_count": cross_validated_auc(np.column_stack([bands, sex, count]), y),
            "model_logit_count_reweighted": cross_validated_auc(np.column_stack([logit, count]), y),
        },
        "by_count": rates_by_count(count, y, risk),
    }


def mexico_death_by_count(cohort: MexicoCohort, rows: np.ndarray) -> dict[str, Any]:
    """Death rate per count of the model's recorded conditions, hospitalised ``rows`` only."""
    hospitalised = rows[cohort.hospitalised[rows].astype(bool)]
    deaths = cohort.outcomes["death"].to_numpy(float)[hospitalised]
    flags = cohort.features.iloc[hospitalised][list(MEXICO_CONDITIONS)].to_numpy(float)
    known = ~np.isnan(deaths)
    count = np.nansum(flags, axis=1)[known]
    return {"conditions": list(MEXICO_CONDITIONS), "by_count": rates_by_count(count, deaths[known])}
