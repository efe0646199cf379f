"""External validation on every REAL cohort, and the Dutch split-half recalibration check.

:func:`validate_cohorts` runs :func:`triage.risk.validation.validate` on each cohort of
:mod:`triage.risk.cohorts`; :func:`card_table` turns the reports into the rows the model cards
and docs/risk-validation.md show (our model vs age alone vs comorbidity count vs the cohort's
own cross-validated ceiling, same rows); :func:`split_half_recalibration` fits a site layer
on one half of a cohort (:mod:`triage.risk.recalibration`) and validates on the other half,
:func:`split_half_spread` repeats that over many halvings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from triage.risk.card import OUTCOME_MODELS, RISK_COLUMNS
from triage.risk.cohorts import ExternalCohort
from triage.risk.model import CARD_SUFFIX, load_card
from triage.risk.recalibration import fit_layer, without_site_layers
from triage.risk.scoring import RiskPanel
from triage.risk.validation import outcome_report, parse_table, score_table, validate

#: the alert levels of the default single-threshold policy (0.2: moderate, high, critical)
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.6)


def validate_cohorts(
    cohorts: dict[str, ExternalCohort], panel: RiskPanel, *, n_boot: int, seed: int
) -> dict[str, Any]:
    """Cohort name -> {"cohort": provenance, "report": validation report}."""
    return {
        name: {
            "cohort": cohort.describe(),
            "report": validate(
                parse_table(cohort.rows()),
                panel,
                thresholds=DEFAULT_THRESHOLDS,
                n_boot=n_boot,
                seed=seed,
            ),
        }
        for name, cohort in cohorts.items()
    }


def card_table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per cohort and outcome: AUCs (with CIs) side by side, calibration, verdicts."""
    rows = []
    for name, result in results.items():
        for outcome, entry in result["report"]["outcomes"].items():
            if "refused" in entry:
                continue
            model, age = entry["model"]["auc"], entry["age_alone"]["auc"]
            ceiling = (entry["ceiling_logistic_cv"] or {}).get("auc")
            count = entry["comorbidity_count"]
            rows.append(
                {
                    "cohort": name,
                    "outcome": outcome,
                    "n": entry["n"],
                    "events": entry["events"],
                    "model": entry["model"],
                    "age_alone": entry["age_alone"],
                    "comorbidity_count": count,
                    "ceiling_logistic_cv": entry["ceiling_logistic_cv"],
                    "calibration_in_the_large": entry["calibration_in_the_large"],
                    "calibration_slope": entry["calibration_slope"],
                    "brier": entry["brier"],
                    "fields": result["report"]["fields_recorded"],
                    "model_minus_age": round(model - age, 4),
                    "model_minus_ceiling": None if ceiling is None else round(model - ceiling, 4),
                }
            )
    return rows


def split_half_recalibration(
    cohort: ExternalCohort, panel: RiskPanel, outcome: str, seed: int
) -> dict[str, Any]:
    """Fit a site layer on a random half of ``cohort``, validate on the other half."""
    table = parse_table(cohort.rows())
    labels = table.outcomes[outcome]
    known = np.flatnonzero(~np.isnan(labels))
    halves = np.array_split(np.random.default_rng(seed).permutation(known), 2)
    fit_rows, test_rows = np.sort(halves[0]), np.sort(halves[1])
    risks, _ = score_table(table, without_site_layers(panel))
    probs = risks[RISK_COLUMNS[outcome]]
    layer = fit_layer(probs[fit_rows], labels[fit_rows])
    before = outcome_report(labels[test_rows], probs[test_rows], (), n_boot=0, seed=seed)
    after = outcome_report(
        labels[test_rows], layer.apply(probs[test_rows]), (), n_boot=0, seed=seed
    )
    keys = ("calibration_in_the_large", "calibration_slope", "brier", "expected_rate")
    return {
        "cohort": cohort.name,
        "outcome": outcome,
        "method": layer.to_dict()["method"],
        "fit_rows": len(fit_rows),
        "validation_rows": len(test_rows),
        "observed_rate": after["observed_rate"],
        "before": {k: before[k] for k in keys},
        "after": {k: after[k] for k in keys},
        "auc_validation_half": after["model"]["auc"],
    }


def split_half_spread(
    cohort: ExternalCohort, panel: RiskPanel, outcome: str, seeds: range
) -> dict[str, Any]:
    """:func:`split_half_recalibration` over many random halvings: how its slope varies.

    One halving is one draw; with weak discrimination the validation half's slope moves by
    +-0.2 between draws, so a single figure says little about the layer.
    """
    runs = [split_half_recalibration(cohort, panel, outcome, seed) for seed in seeds]
    slopes = np.array([r["after"]["calibration_slope"] for r in runs], dtype=float)
    methods = [r["method"] for r in runs]
    return {
        "cohort": cohort.name,
        "outcome": outcome,
        "seeds": [seeds.start, seeds.stop - 1],
        "slope_after_quartiles": [
            round(float(q), 3) for q in np.percentile(slopes, [0, 25, 50, 75, 100])
        ],
        "slope_after_within_0_8_1_2": int(((slopes >= 0.8) & (slopes <= 1.2)).sum()),
        "halvings": len(runs),
        "methods": {m: methods.count(m) for m in sorted(set(methods))},
    }


def write_to_cards(models_dir: Path, rows: list[dict[str, Any]], protocol: str) -> None:
    """Put the external table of each outcome into its two cards (the version is unchanged)."""
    for name in OUTCOME_MODELS:
        mine = [r for r in rows if r["outcome"] == name]
        for artifact in (name, f"{name}_clinical"):
            path = Path(models_dir) / f"{artifact}.ubj"
            card = load_card(path)
            card["external_validation"] = {
                "label": "REAL DATA: external cohorts, scored once with this model",
                "protocol": protocol,
                "rows": mine,
            }
            path.with_name(artifact + CARD_SUFFIX).write_text(
                json.dumps(card, indent=2) + "\n", encoding="utf-8"
            )
