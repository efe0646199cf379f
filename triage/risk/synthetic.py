"""Training on the SYNTHETIC demo cohort of :mod:`triage.cohort` (``ctriage train --cohort``).

Proves the plumbing end to end (FHIR bundles -> clinical features, DICOM phantoms -> imaging
biomarkers, outcomes -> an XGBoost artifact with a card); every metric it writes is labelled
SYNTHETIC. The shipped models are trained on real data by :mod:`triage.risk_training`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import xgboost as xgb

from triage.exceptions import FhirRejected, TrainingDataError, TrainingDataReason
from triage.fhir.context import ClinicalContext
from triage.fhir.features import FEATURE_UNITS, FEATURES, clinical_features, feature_vector
from triage.risk.evaluation import (
    calibration_error,
    operating_point,
    roc_auc,
    stratified_folds,
    stratified_split,
)
from triage.risk.model import (
    OPERATING_THRESHOLDS,
    SYNTHETIC_LABEL,
    model_version,
    write_artifact,
)

logger = logging.getLogger(__name__)

ModelCard = dict[str, Any]
# The caller's imaging quantifier (triage never imports the imaging code): a study folder ->
# biomarkers, or a string naming why the study is excluded (e.g. "series_rejected:too_few_slices").
BiomarkerFn = Callable[[Path], dict[str, float] | str]

TARGETS: dict[str, str] = {
    "ventilation_14d": "invasive mechanical ventilation within 14 days of the CT",
    "icu_admission": "ICU admission after the CT",
}
XGB_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "max_depth": 3,
    "eta": 0.05,
    "min_child_weight": 2.0,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "lambda": 1.0,
    "tree_method": "hist",
}
MAX_BOOST_ROUNDS = 400
CV_FOLDS = 5
MIN_STUDIES = 20


@dataclass(frozen=True)
class TrainingTable:
    """Feature matrix (NaN = missing) and labels, one row per study."""

    study_uids: list[str]
    matrix: np.ndarray
    labels: np.ndarray
    excluded: dict[str, int]
    fhir_rejections: dict[str, int]


def build_training_table(
    cohort_dir: Path,
    target: str,
    biomarker_fn: BiomarkerFn,
    window_h: float = 72.0,
    workers: int = 1,
) -> TrainingTable:
    """Read a cohort (manifest, FHIR bundles, outcomes) into a feature table for ``target``.

    Clinical features come from the FHIR bundles at each ``ct_time``; imaging biomarkers from
    ``biomarker_fn(study_dir)`` (in ``workers`` forked processes when ``workers > 1``).
    """
    cohort_dir = Path(cohort_dir)
    if target not in TARGETS:
        raise TrainingDataError(TrainingDataReason.UNKNOWN_TARGET, f"{target!r} not in {TARGETS}")
    manifest = _read_json(cohort_dir / "manifest.json")
    outcomes = _read_outcomes(cohort_dir / "outcomes.csv", target)
    studies = manifest.get("studies")
    if not isinstance(studies, list) or not studies:
        raise TrainingDataError(TrainingDataReason.INVALID_MANIFEST, "manifest has no studies")
    excluded: Counter[str] = Counter()
    rejections: Counter[str] = Counter()
    rows: list[tuple[str, dict[str, float | None], int, Path]] = []
    for study in studies:
        try:
            uid, bundle_path = str(study["study_uid"]), cohort_dir / study["fhir_bundle"]
            study_dir = cohort_dir / study["study_dir"]
            at = _aware(datetime.fromisoformat(str(study["ct_time"]).replace("Z", "+00:00")))
        except (KeyError, TypeError, ValueError) as e:
            raise TrainingDataError(
                TrainingDataReason.INVALID_MANIFEST, f"study entry {study!r}: {e}"
            ) from e
        if uid not in outcomes:
            raise TrainingDataError(TrainingDataReason.MISSING_OUTCOME, f"no outcome for {uid}")
        ctx = ClinicalContext()
        for entry in _read_json(bundle_path).get("entry") or []:
            try:
                ctx = ctx.apply(entry.get("resource"))
            except FhirRejected as e:
                rejections[e.reason.value] += 1
        rows.append((uid, clinical_features(ctx, at, window_h), outcomes[uid], study_dir))
    imaging = _all_biomarkers([r[3] for r in rows], biomarker_fn, workers)
    uids, vectors, labels = [], [], []
    for (uid, clinical, label, _), bio in zip(rows, imaging, strict=True):
        if isinstance(bio, str):
            excluded[bio] += 1
            continue
        vector = feature_vector(bio, clinical)
        uids.append(uid)
        vectors.append([_as_float(vector[name]) for name in FEATURES])
        labels.append(label)
    matrix = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), len(FEATURES))
    return TrainingTable(
        uids, matrix, np.asarray(labels, dtype=np.int32), dict(excluded), dict(rejections)
    )


def train_from_cohort(
    cohort_dir: Path,
    out_path: Path,
    seed: int,
    *,
    target: str = "ventilation_14d",
    test_fraction: float = 0.25,
    policy_thresholds: Sequence[float] = (0.5,),
    window_h: float = 72.0,
    workers: int = 1,
    biomarker_fn: BiomarkerFn,
    biomarker_source: str,
) -> ModelCard:
    """Train the risk model on a cohort, write ``out_path`` (.ubj) and its card; return the card.

    Stratified seeded hold-out (``test_fraction``); boosting rounds chosen by stratified
    ``CV_FOLDS``-fold cross-validation on the training part; metrics on the held-out part.
    """
    started = time.perf_counter()
    out_path = Path(out_path)
    if out_path.suffix != ".ubj":
        raise ValueError(f"model path must end in .ubj, got {out_path}")
    table = build_training_table(cohort_dir, target, biomarker_fn, window_h, workers)
    labels = table.labels
    if len(labels) < MIN_STUDIES:
        raise TrainingDataError(
            TrainingDataReason.TOO_FEW_STUDIES, f"{len(labels)} usable studies < {MIN_STUDIES}"
        )
    if labels.min() == labels.max() or min(labels.sum(), len(labels) - labels.sum()) < CV_FOLDS:
        raise TrainingDataError(
            TrainingDataReason.SINGLE_CLASS,
            f"{int(labels.sum())} positives of {len(labels)}: too few of one class",
        )
    rng = np.random.default_rng(seed)
    train_idx, test_idx = stratified_split(labels, test_fraction, rng)
    params = {**XGB_PARAMS, "seed": seed, "nthread": 0}
    dtrain = xgb.DMatrix(
        table.matrix[train_idx],
        label=labels[train_idx],
        missing=np.nan,
        feature_names=list(FEATURES),
    )
    folds = stratified_folds(labels[train_idx], CV_FOLDS, rng)
    history = xgb.cv(
        params,
        dtrain,
        MAX_BOOST_ROUNDS,
        folds=folds,
        early_stopping_rounds=30,
        seed=seed,
        as_pandas=False,
    )
    rounds = len(cast(list[float], history["test-logloss-mean"]))
    booster = xgb.train(params, dtrain, num_boost_round=rounds)
    raw = bytes(booster.save_raw(raw_format="ubj"))
    probs = booster.predict(
        xgb.DMatrix(table.matrix[test_idx], missing=np.nan, feature_names=list(FEATURES))
    )
    y_test = labels[test_idx]
    card = _card(
        name=out_path.stem,
        version=model_version(raw),
        target=target,
        seed=seed,
        cohort_dir=Path(cohort_dir),
        table=table,
        n_train=len(train_idx),
        y_test=y_test,
        probs=probs,
        params={**params, "num_boost_round": rounds},
        policy_thresholds=policy_thresholds,
        window_h=window_h,
        biomarker_source=biomarker_source,
    )
    card["training_time_s"] = round(time.perf_counter() - started, 3)
    write_artifact(out_path, raw, card)
    logger.info(
        "trained %s version %s: test AUC %s", out_path, card["version"], card["metrics"]["auc"]
    )
    return card


def _card(
    *,
    name: str,
    version: str,
    target: str,
    seed: int,
    cohort_dir: Path,
    table: TrainingTable,
    n_train: int,
    y_test: np.ndarray,
    probs: np.ndarray,
    params: dict[str, Any],
    policy_thresholds: Sequence[float],
    window_h: float,
    biomarker_source: str,
) -> ModelCard:
    manifest = _read_json(cohort_dir / "manifest.json")
    auc = roc_auc(y_test, probs)
    return {
        "name": name,
        "version": version,
        "format": "xgboost universal binary JSON (.ubj)",
        "xgboost_version": xgb.__version__,
        "target": target,
        "target_description": TARGETS[target],
        "features": [{"name": n, "unit": FEATURE_UNITS[n]} for n in FEATURES],
        "missing_values": "passed to XGBoost as missing (NaN); never imputed",
        "clinical_window_h": window_h,
        "training_data": {
            "synthetic": True,
            "description": "ctriage synthetic cohort (triage.cohort): generated FHIR records, "
            "CT phantoms and outcomes; no real patient",
            "cohort_seed": manifest.get("seed"),
            "n_patients": manifest.get("n_patients"),
            "hospital": manifest.get("hospital"),
            "sha256": cohort_hash(cohort_dir),
            "sha256_covers": "manifest.json, outcomes.csv and the FHIR bundles",
            "biomarker_source": biomarker_source,
            "n_studies": len(table.labels),
            "n_positive": int(table.labels.sum()),
            "excluded": table.excluded,
            "fhir_rejections": table.fhir_rejections,
        },
        "seed": seed,
        "params": params,
        "metrics": {
            "label": SYNTHETIC_LABEL,
            "split": f"stratified seeded hold-out: {n_train} train / {len(y_test)} test",
            "n_test": len(y_test),
            "n_test_positive": int(y_test.sum()),
            "auc": None if auc is None else round(auc, 4),
            "brier": round(float(np.mean((probs - y_test) ** 2)), 4),
            "calibration_error": round(calibration_error(y_test, probs), 4),
            "at_policy_thresholds": [operating_point(y_test, probs, t) for t in policy_thresholds],
        },
        "operating_points_label": SYNTHETIC_LABEL,
        "operating_points": [operating_point(y_test, probs, t) for t in OPERATING_THRESHOLDS],
    }


def cohort_hash(cohort_dir: Path) -> str:
    """Return the SHA-256 of a cohort's manifest, outcomes and FHIR bundles (sorted by path)."""
    digest = hashlib.sha256()
    files = [cohort_dir / "manifest.json", cohort_dir / "outcomes.csv"]
    files += sorted((cohort_dir / "fhir").glob("*.json")) if (cohort_dir / "fhir").is_dir() else []
    for path in files:
        digest.update(path.relative_to(cohort_dir).as_posix().encode("utf-8") + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _all_biomarkers(
    study_dirs: list[Path], biomarker_fn: BiomarkerFn, workers: int
) -> list[dict[str, float] | str]:
    if workers <= 1:
        return [biomarker_fn(d) for d in study_dirs]
    # fork: works from any entry point (spawn re-imports __main__). The children only run the
    # caller's quantifier, never XGBoost, so the parent's OpenMP pool is moot.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(biomarker_fn, study_dirs, chunksize=4))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise TrainingDataError(TrainingDataReason.MISSING_FILE, str(path)) from e
    except (OSError, json.JSONDecodeError) as e:
        raise TrainingDataError(TrainingDataReason.INVALID_MANIFEST, f"{path}: {e}") from e
    if not isinstance(data, dict):
        raise TrainingDataError(TrainingDataReason.INVALID_MANIFEST, f"{path}: not an object")
    return data


def _read_outcomes(path: Path, target: str) -> dict[str, int]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError as e:
        raise TrainingDataError(TrainingDataReason.MISSING_FILE, str(path)) from e
    try:
        return {row["study_uid"]: int(float(row[target])) for row in rows}
    except (KeyError, ValueError) as e:
        raise TrainingDataError(TrainingDataReason.MISSING_OUTCOME, f"{path}: {e}") from e


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _as_float(value: float | None) -> float:
    return float("nan") if value is None else float(value)
