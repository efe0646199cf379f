"""Train and evaluate the shipped risk models: REAL Mexico clinical data + SEMI-SYNTHETIC imaging.

For each outcome (ventilation = intubation, the pipeline's primary model; ICU; death) two
XGBoost models are trained on the same rows:

- ``<name>_clinical``: age, sex, comorbidities, pneumonia; REAL data, REAL metrics;
- ``<name>``: the same plus the six CT biomarkers drawn by :mod:`triage.semisynthetic`
  (fused); its metrics are SEMI-SYNTHETIC.

Splits (seeded): ``random`` (stratified on the three outcomes: 20 % test; of the rest 12.5 %
early stopping, 12.5 % calibration, the remainder fitting) and ``temporal`` (admissions from
the 70th-percentile admission date on are the test set; the earlier ones are split as above).
The shipped artifacts are the ``random`` models, trained on the fitting rows only, so their
cards describe exactly the shipped bytes. Each model is calibrated (isotonic) on its
calibration rows and compared on the same test rows with baselines: age alone, comorbidity
count, and logistic regression (clinical; clinical + imaging for the fused model).

What the models may learn (dropped registry artefacts, monotone constraints) and how they learn
that a field can be unknown (fields withheld at random from the fitting and calibration rows)
is decided in :mod:`triage.risk.robust`. Test metrics are reported on the real test rows, with
the pneumonia flag withheld from every test row (the stream's situation), and with each
clinical field withheld in turn (what a site that does not record it gets).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from triage.fhir.features import FEATURES, IMAGING_FEATURES
from triage.risk import published, robust, semisynthetic
from triage.risk.card import CLINICAL_SUFFIX, OUTCOME_MODELS, build_card
from triage.risk.evaluation import (
    IsotonicCalibration,
    LogisticModel,
    operating_point,
    roc_auc,
    stratified_split,
    summary_metrics,
    threshold_for_sensitivity,
)
from triage.risk.marginal import Background
from triage.risk.mexico import COMORBIDITY_FEATURES, MexicoCohort, cohort_description, load_cohort
from triage.risk.model import model_version, write_artifact

logger = logging.getLogger(__name__)

XGB_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "max_depth": 4,
    "eta": 0.05,
    "min_child_weight": 5.0,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "lambda": 1.0,
    "tree_method": "hist",
}
MAX_ROUNDS = 1000
EARLY_STOPPING_ROUNDS = 50
TEST_FRACTION = 0.2
CALIBRATION_FRACTION = 0.125
STOPPING_FRACTION = 0.125
TEMPORAL_QUANTILE = 0.7
SENSITIVITY_TARGET = 0.8
OPERATING_THRESHOLDS: tuple[float, ...] = (
    0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
)  # fmt: skip
SPLITS: tuple[str, ...] = ("random", "temporal")
#: XGBoost threads: the machines that train are shared (two cores at most)
NTHREAD = 2
_PNEUMONIA = FEATURES.index("has_pneumonia")


@dataclass(frozen=True)
class Split:
    """Row indices of one evaluation design."""

    name: str
    fit: np.ndarray
    stop: np.ndarray
    calibration: np.ndarray
    test: np.ndarray
    description: str

    def known(self, labels: np.ndarray) -> Split:
        """The same split without the rows whose label is unknown (NaN)."""
        keep = ~np.isnan(labels)
        fit, stop, calibration, test = (
            p[keep[p]] for p in (self.fit, self.stop, self.calibration, self.test)
        )
        return Split(self.name, fit, stop, calibration, test, self.description)

    @property
    def train(self) -> np.ndarray:
        """Every row before the test set (for the baselines)."""
        return np.sort(np.concatenate([self.fit, self.stop, self.calibration]))


@dataclass(frozen=True)
class FittedModel:
    """One trained, calibrated model and its held-out evaluation."""

    raw: bytes
    calibration: IsotonicCalibration
    background: Background
    rounds: int
    evaluation: dict[str, Any]
    operating_points: list[dict[str, Any]]


def make_splits(cohort: MexicoCohort, seed: int) -> dict[str, Split]:
    """The ``random`` and ``temporal`` splits of a cohort (see the module docstring)."""
    o = cohort.outcomes.fillna(0).to_numpy()
    strata = (o[:, 0] * 4 + o[:, 1] * 2 + o[:, 2]).astype(int)
    rng = np.random.default_rng(seed)
    train, test = stratified_split(strata, TEST_FRACTION, rng)
    splits = {"random": _inner(train, test, strata, rng, "random", "stratified seeded")}
    cutoff = cohort.admitted.quantile(TEMPORAL_QUANTILE)
    late = (cohort.admitted >= cutoff).to_numpy()
    splits["temporal"] = _inner(
        np.flatnonzero(~late),
        np.flatnonzero(late),
        strata,
        rng,
        "temporal",
        f"admitted before {cutoff.date()} -> train, from {cutoff.date()} on -> test",
    )
    return splits


def _inner(
    train: np.ndarray,
    test: np.ndarray,
    strata: np.ndarray,
    rng: np.random.Generator,
    name: str,
    how: str,
) -> Split:
    rest, calibration = stratified_split(strata[train], CALIBRATION_FRACTION, rng)
    fit, stop = stratified_split(
        strata[train][rest], STOPPING_FRACTION / (1 - CALIBRATION_FRACTION), rng
    )
    parts = (train[rest][fit], train[rest][stop], train[calibration], test)
    sizes = "/".join(str(len(p)) for p in parts)
    return Split(name, *parts, f"{how}; fit/early-stopping/calibration/test rows {sizes}")


def feature_matrices(cohort: MexicoCohort, imaging: pd.DataFrame) -> dict[str, np.ndarray]:
    """``clinical`` and ``fused`` matrices in :data:`FEATURES` order (NaN = missing)."""
    clinical = np.full((len(cohort), len(FEATURES)), np.nan, dtype=np.float32)
    for name in cohort.features.columns:
        clinical[:, FEATURES.index(name)] = cohort.features[name].to_numpy(dtype=np.float32)
    fused = clinical.copy()
    for name in IMAGING_FEATURES:
        fused[:, FEATURES.index(name)] = imaging[name].to_numpy(dtype=np.float32)
    return {"clinical": clinical, "fused": fused}


def fit_model(
    matrix: np.ndarray,
    labels: np.ndarray,
    split: Split,
    seed: int,
    n_boot: int = 1000,
    *,
    outcome_model: str = "ventilation",
) -> FittedModel:
    """Fit (early stopping), calibrate and evaluate one model on one split's known rows."""
    rng = np.random.default_rng(seed)
    seen = np.concatenate([split.fit, split.stop, split.calibration])
    x = robust.withhold(matrix, seen, rng)
    matrix = robust.without_dropped(matrix)
    constraints = robust.constraint_string(robust.monotone_constraints(outcome_model))
    params = {**XGB_PARAMS, "monotone_constraints": constraints, "seed": seed, "nthread": NTHREAD}
    names = list(FEATURES)
    dfit = xgb.DMatrix(x[split.fit], label=labels[split.fit], missing=np.nan, feature_names=names)
    dstop = xgb.DMatrix(
        x[split.stop], label=labels[split.stop], missing=np.nan, feature_names=names
    )
    booster = xgb.train(
        params,
        dfit,
        MAX_ROUNDS,
        evals=[(dstop, "stop")],
        early_stopping_rounds=EARLY_STOPPING_ROUNDS,
        verbose_eval=False,
    )
    rounds = booster.best_iteration + 1
    booster = booster[:rounds]
    background = robust.background(matrix, split.fit, rng)

    def raw_of(rows: np.ndarray) -> np.ndarray:
        return background.predict(lambda m: _raw(booster, m), rows)

    calibration = IsotonicCalibration.fit(raw_of(x[split.calibration]), labels[split.calibration])
    y_test = labels[split.test]
    raw_test = raw_of(matrix[split.test])
    probs = calibration.apply(raw_test)
    threshold = threshold_for_sensitivity(
        labels[split.calibration],
        calibration.apply(raw_of(x[split.calibration])),
        SENSITIVITY_TARGET,
    )
    withheld = matrix[split.test].copy()
    withheld[:, _PNEUMONIA] = np.nan
    evaluation = {
        **summary_metrics(y_test, probs, n_boot=n_boot, seed=seed),
        "ece_uncalibrated": summary_metrics(y_test, raw_test, n_boot=0, seed=seed)["ece"],
        "at_sensitivity_80": operating_point(y_test, probs, round(threshold, 4)),
        "without_pneumonia_flag": summary_metrics(
            y_test, calibration.apply(raw_of(withheld)), n_boot=0, seed=seed
        ),
        "auc_with_field_withheld": withheld_field_aucs(raw_of, matrix[split.test], y_test),
        "rounds": rounds,
    }
    points = [operating_point(y_test, probs, t) for t in OPERATING_THRESHOLDS]
    raw = bytes(booster.save_raw(raw_format="ubj"))
    return FittedModel(raw, calibration, background, rounds, evaluation, points)


def withheld_field_aucs(
    raw_of: Callable[[np.ndarray], np.ndarray], matrix: np.ndarray, labels: np.ndarray
) -> dict[str, float | None]:
    """Held-out AUC with each clinical field withheld from every row in turn (raw scores)."""
    out: dict[str, float | None] = {}
    for name in robust.CLINICAL_FIELDS:
        x = matrix.copy()
        x[:, FEATURES.index(name)] = np.nan
        auc = roc_auc(labels, raw_of(x))
        out[name] = None if auc is None else round(auc, 4)
    return out


def _raw(booster: xgb.Booster, matrix: np.ndarray) -> np.ndarray:
    return np.asarray(booster.inplace_predict(matrix, missing=np.nan), dtype=float)


def baselines(
    matrices: dict[str, np.ndarray], labels: np.ndarray, split: Split, seed: int, n_boot: int
) -> dict[str, dict[str, Any]]:
    """Age alone, comorbidity count and logistic regressions, fitted on the split's train rows."""
    clinical = matrices["clinical"]
    count = np.nansum(clinical[:, [FEATURES.index(f) for f in COMORBIDITY_FEATURES]], axis=1)
    used = [i for i in range(len(FEATURES)) if not np.isnan(clinical[:, i]).all()]
    imaging = [FEATURES.index(f) for f in IMAGING_FEATURES]
    designs = {
        "age_alone": clinical[:, [FEATURES.index("age_years")]],
        "comorbidity_count": count[:, None],
        "logistic_clinical": clinical[:, used],
        "logistic_fused": matrices["fused"][:, used + imaging],
    }
    out = {}
    for name, design in designs.items():
        model = LogisticModel().fit(design[split.train], labels[split.train])
        probs = model.predict_proba(design[split.test])
        threshold = threshold_for_sensitivity(
            labels[split.train], model.predict_proba(design[split.train]), SENSITIVITY_TARGET
        )
        out[name] = {
            **summary_metrics(labels[split.test], probs, n_boot=n_boot, seed=seed),
            "at_sensitivity_80": operating_point(labels[split.test], probs, round(threshold, 4)),
        }
    return out


def train_mexico(
    data_dir: Path,
    out_dir: Path | None,
    seed: int = 2020,
    *,
    n_boot: int = 1000,
    max_rows: int | None = None,
    splits: tuple[str, ...] = SPLITS,
) -> dict[str, Any]:
    """Train every outcome model on the Mexico cohort; write artifacts to ``out_dir`` (if set).

    Returns the evaluation summary (also written as ``out_dir/risk_evaluation.json``).
    ``max_rows`` subsamples the cohort (seeded) for quick runs; the shipped models use all.
    """
    started = time.perf_counter()
    cohort = load_cohort(Path(data_dir))
    if max_rows is not None and max_rows < len(cohort):
        cohort = _subsample(cohort, max_rows, seed)
    o = cohort.outcomes
    imaging, odds = semi_synthetic_imaging(cohort, seed)
    matrices = feature_matrices(cohort, imaging)
    all_splits = make_splits(cohort, seed)
    data = cohort_description(cohort)
    summary: dict[str, Any] = {
        "training_data": data,
        "semi_synthetic_odds_ratios": odds,
        "seed": seed,
        "bootstrap_replicates": n_boot,
        "pneumonia_withheld_fraction": robust.PNEUMONIA_WITHHELD,
        "history_withheld_fraction": robust.HISTORY_WITHHELD,
        "field_withheld_fraction": robust.FIELD_WITHHELD,
        "splits": {s: all_splits[s].description for s in splits},
        "outcomes": {},
    }
    for name, (outcome, _) in OUTCOME_MODELS.items():
        labels = o[outcome].to_numpy(dtype=float)
        per_split: dict[str, Any] = {}
        shipped: dict[str, FittedModel] = {}
        for split_name in splits:
            split = all_splits[split_name].known(labels)
            fitted = {
                kind: fit_model(matrices[kind], labels, split, seed, n_boot, outcome_model=name)
                for kind in matrices
            }
            per_split[split_name] = {
                "split": split.description,
                "fused": fitted["fused"].evaluation,
                "clinical": fitted["clinical"].evaluation,
                "baselines": baselines(matrices, labels, split, seed, n_boot),
            }
            if split_name == "random":
                shipped = fitted
        summary["outcomes"][name] = per_split
        if out_dir is not None and shipped:
            _write_shipped(Path(out_dir), name, shipped, per_split, summary)
    summary["training_time_s"] = round(time.perf_counter() - started, 1)
    if out_dir is not None:
        (Path(out_dir) / "risk_evaluation.json").write_text(
            json.dumps(summary, indent=2) + "\n", encoding="utf-8"
        )
    logger.info("trained Mexico risk models in %.1f s", summary["training_time_s"])
    return summary


def semi_synthetic_imaging(cohort: MexicoCohort, seed: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Drawn biomarkers as the lesion model would measure them, and the odds ratios reached."""
    f, o = cohort.features, cohort.outcomes
    truth = semisynthetic.draw_biomarkers(
        f["has_pneumonia"].to_numpy(),
        o["intubation"].to_numpy(),
        o["icu"].to_numpy(),
        o["death"].to_numpy(),
        f["sex_male"].to_numpy(),
        seed,
    )
    imaging = semisynthetic.measured_by_lesion_model(truth, seed + 1)
    odds = {
        kind: semisynthetic.achieved_odds_ratios(
            frame, f["has_pneumonia"].to_numpy(), *(o[c].to_numpy() for c in o.columns)
        )
        for kind, frame in (("drawn", truth), ("measured", imaging))
    }
    return imaging, odds


def _write_shipped(
    out_dir: Path,
    name: str,
    shipped: dict[str, FittedModel],
    per_split: dict[str, Any],
    summary: dict[str, Any],
) -> None:
    for kind, model in shipped.items():
        artifact = name if kind == "fused" else name + CLINICAL_SUFFIX
        card = build_card(
            artifact,
            name,
            kind,
            calibration=model.calibration.to_dict(),
            operating_points=model.operating_points,
            per_split=per_split,
            summary=summary,
            params={
                **XGB_PARAMS,
                "monotone_constraints": robust.monotone_constraints(name),
                "seed": summary["seed"],
                "num_boost_round": model.rounds,
            },
        )
        card["marginalisation"] = model.background.to_dict()
        if name in published.OUTCOMES:  # labs and vitals the Mexico file cannot teach
            card["published_points"] = published.PublishedPoints.four_c().to_dict()
        card["version"] = model_version(
            model.raw, card["calibration"], card["marginalisation"], card.get("published_points")
        )
        write_artifact(out_dir / f"{artifact}.ubj", model.raw, card)


def _subsample(cohort: MexicoCohort, n: int, seed: int) -> MexicoCohort:
    rows = np.sort(np.random.default_rng(seed).choice(len(cohort), n, replace=False))
    return MexicoCohort(
        features=cohort.features.iloc[rows].reset_index(drop=True),
        outcomes=cohort.outcomes.iloc[rows].reset_index(drop=True),
        admitted=cohort.admitted.iloc[rows].reset_index(drop=True),
        hospitalised=cohort.hospitalised[rows],
        sha256=cohort.sha256,
        source=cohort.source,
        follow_up_days=cohort.follow_up_days,
        counts={**cohort.counts, "subsampled_to": n},
    )
