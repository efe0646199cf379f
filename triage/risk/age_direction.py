"""Can one ICU model meet the external ICU targets of two cohorts at once? An oracle on age.

Issue 13 asks, for every external cohort and outcome, that the shipped model be never worse than
age alone and within 0.01 AUC of the cohort's own ceiling. Two cohorts have ICU admission, and
their ICU rates move in opposite directions with age after about 65 (RIVM Netherlands: 18 % at
60-69, 4 % at 80-89; Sirio-Libanes: 43 % in the age band holding the 65th birthday, 77 % in the
oldest). This module measures what that costs any model, with an **oracle**: a logistic model
fitted on the cohort itself, in sample (generous: no model transported from elsewhere does
better), with a free risk per age band, the cohort's other fields, and one constraint on the
age bands from ``region_from`` on: risk never falls (``direction=+1``) or never rises (``-1``).

If the Dutch oracle whose risk never falls after 65 stays under the Dutch ceiling - 0.01, and
the Sirio-Libanes oracle whose risk never rises after 66 stays under age alone there, then no
single ICU model whose risk depends on age the same way at both sites meets both cohorts'
targets (only one that tells the sites apart, e.g. by which fields are recorded, which is an
artefact, not medicine). The analysis reads the external outcomes and so never feeds a model
choice; it says what the targets ask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from triage.risk.cohorts import ExternalCohort
from triage.risk.evaluation import roc_auc
from triage.risk.validation import _age_score, ceiling_scores, parse_table


@dataclass(frozen=True)
class AgeOracle:
    """An in-sample fit: its AUC and the log-odds of each age band (fields at 0)."""

    auc: float
    bands: tuple[float, ...]
    band_logit: tuple[float, ...]


def monotone_age_fit(
    age: np.ndarray, fields: np.ndarray, labels: np.ndarray, region_from: float, direction: int
) -> AgeOracle:
    """Logistic fit: a log-odds per age band + ``fields`` @ b, bands >= ``region_from`` monotone.

    ``direction`` +1: the bands from ``region_from`` on never fall; -1: never rise. A
    ``region_from`` above every age leaves every band free (the unconstrained oracle).
    """
    bands = np.unique(age)
    index = np.searchsorted(bands, age)
    n_free = int((bands < region_from).sum())
    n_tied = len(bands) - n_free

    def band_logit(theta: np.ndarray) -> np.ndarray:
        out = np.empty(len(bands))
        out[:n_free] = theta[:n_free]
        if n_tied:
            steps = np.logaddexp(0.0, theta[n_free + 1 : n_free + n_tied])  # softplus >= 0
            out[n_free:] = theta[n_free] + direction * np.concatenate([[0.0], np.cumsum(steps)])
        return out

    def loss(theta: np.ndarray) -> float:
        z = band_logit(theta)[index] + fields @ theta[n_free + n_tied :]
        return float(np.sum(np.logaddexp(0.0, z) - labels * z))

    start = np.zeros(n_free + n_tied + fields.shape[1])
    start[n_free + 1 : n_free + n_tied] = -3.0  # tied bands start nearly flat
    theta = minimize(loss, start, method="L-BFGS-B").x
    logits = band_logit(theta)
    auc = roc_auc(labels, logits[index] + fields @ theta[n_free + n_tied :])
    return AgeOracle(
        auc=float(auc) if auc is not None else float("nan"),
        bands=tuple(float(b) for b in bands),
        band_logit=tuple(round(float(v), 3) for v in logits),
    )


def _design(cohort: ExternalCohort, columns: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    table = cohort.table.dropna(subset=["age", "icu", *columns])
    fields = np.column_stack([
        (table[c] == "M").astype(float) if c == "sex" else table[c].astype(float)
        for c in columns
    ])  # fmt: skip
    return table["age"].to_numpy(float), fields, table["icu"].to_numpy(float)


def icu_targets(cohort: ExternalCohort, seed: int = 2020) -> dict[str, float]:
    """The issue's two ICU bars on the cohort, by the validation's own code and rows."""
    table = parse_table(cohort.rows())
    labels = table.outcomes["icu"]
    known = ~np.isnan(labels)
    y = labels[known]
    ceiling = roc_auc(y, ceiling_scores(table, known, y, seed))
    age_alone = roc_auc(y, _age_score(table.matrix[known]))
    return {"rows": int(known.sum()), "age_alone": round(float(age_alone or 0), 4),
            "ceiling_logistic_cv": round(float(ceiling or 0), 4)}  # fmt: skip


def icu_age_conflict(
    dutch: ExternalCohort, sirio: ExternalCohort, dutch_from: float = 65.0,
    sirio_from: float = 66.0,
) -> dict[str, Any]:  # fmt: skip
    """The four oracles (each cohort free, and with the other cohort's direction after 65)."""
    d_age, d_fields, d_y = _design(dutch, ("sex", "comorbidity_count"))
    s_age, s_fields, s_y = _design(sirio, ("hypertension", "immunosuppression"))
    never = float("inf")
    fits = {
        "netherlands_free": monotone_age_fit(d_age, d_fields, d_y, never, 1),
        "netherlands_risk_never_falls_from_65": monotone_age_fit(
            d_age, d_fields, d_y, dutch_from, 1
        ),
        "sirio_free": monotone_age_fit(s_age, s_fields, s_y, never, 1),
        "sirio_risk_never_rises_from_66": monotone_age_fit(s_age, s_fields, s_y, sirio_from, -1),
    }
    rates = {
        name: {
            f"{a:g}": round(float(y[age == a].mean()), 3) for a in np.unique(age)
        }
        for name, age, y in (("netherlands", d_age, d_y), ("sirio", s_age, s_y))
    }  # fmt: skip
    return {
        "targets": {"netherlands": icu_targets(dutch), "sirio": icu_targets(sirio)},
        "rows": {"netherlands": len(d_y), "sirio": len(s_y)},
        "icu_rate_by_age": rates,
        "oracles": {
            name: {"auc": round(f.auc, 4), "bands": f.bands, "band_logit": f.band_logit}
            for name, f in fits.items()
        },
    }
