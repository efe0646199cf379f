"""Ventilation-risk model: XGBoost binary classifier, its artifact pair and fast scoring.

Artifacts: ``<name>.ubj`` (XGBoost universal binary JSON, never pickle) and ``<name>.card.json``
(the model card: version = short hash of the model bytes, features with units, training data,
metrics labelled synthetic, operating points). Training lives in :mod:`triage.training`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from triage.exceptions import ModelArtifactError, ModelArtifactReason
from triage.features import FEATURES

logger = logging.getLogger(__name__)

CARD_SUFFIX = ".card.json"
VERSION_HEX_CHARS = 12


class DirectionValues(StrEnum):
    """Which way a feature pushed one patient's risk (closed list)."""

    RAISES = "raises"
    LOWERS = "lowers"


@dataclass(frozen=True)
class Contribution:
    """One feature's SHAP contribution (log-odds) to a score; ``value`` is None if missing."""

    feature: str
    value: float | None
    contribution: float
    direction: DirectionValues


@dataclass(frozen=True)
class RiskScore:
    """Probability of the model's target and the features that moved it most."""

    probability: float
    top_features: list[Contribution]

    def top_features_json(self) -> list[dict[str, Any]]:
        """Return the contributions as JSON-safe dicts (for the ``top_features`` column)."""
        return [{**asdict(c), "direction": c.direction.value} for c in self.top_features]


def card_path(model_path: Path) -> Path:
    """Return the card of a model path: ``x/ventilation.ubj`` -> ``x/ventilation.card.json``."""
    return model_path.with_name(model_path.stem + CARD_SUFFIX)


def model_version(model_bytes: bytes) -> str:
    """Return the version of a model: the first hex digits of the SHA-256 of its bytes."""
    return hashlib.sha256(model_bytes).hexdigest()[:VERSION_HEX_CHARS]


def load_card(model_path: Path) -> dict[str, Any]:
    """Read a model's card; raises :class:`ModelArtifactError` when absent or malformed."""
    path = card_path(Path(model_path))
    if not path.is_file():
        raise ModelArtifactError(ModelArtifactReason.MISSING_CARD, f"no card at {path}")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelArtifactError(ModelArtifactReason.INVALID_CARD, f"{path}: {e}") from e
    if not isinstance(card, dict) or not isinstance(card.get("features"), list):
        raise ModelArtifactError(ModelArtifactReason.INVALID_CARD, f"{path}: no feature list")
    return card


class RiskModel:
    """A loaded, checked risk model. Build with :meth:`load`."""

    def __init__(self, booster: xgb.Booster, card: dict[str, Any], version: str) -> None:
        self._booster = booster
        self.card = card
        self.version = version
        self.features: tuple[str, ...] = FEATURES
        self.target: str = str(card.get("target", "ventilation_14d"))

    @classmethod
    def load(cls, path: Path) -> RiskModel:
        """Load ``<name>.ubj`` and its card; check the card's features equal :data:`FEATURES`.

        Raises :class:`ModelArtifactError` (missing file or card, feature mismatch, a model whose
        bytes do not hash to the card's version, or an unreadable model).
        """
        path = Path(path)
        if not path.is_file():
            raise ModelArtifactError(ModelArtifactReason.MISSING_FILE, f"no model at {path}")
        card = load_card(path)
        names = [f.get("name") if isinstance(f, dict) else f for f in card["features"]]
        if tuple(names) != FEATURES:
            raise ModelArtifactError(
                ModelArtifactReason.FEATURE_MISMATCH,
                f"{path}: card features {names} differ from the code's FEATURES {list(FEATURES)}",
            )
        raw = path.read_bytes()
        version = model_version(raw)
        if card.get("version") != version:
            raise ModelArtifactError(
                ModelArtifactReason.VERSION_MISMATCH,
                f"{path}: bytes hash to {version}, card says {card.get('version')}",
            )
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(raw))
        except xgb.core.XGBoostError as e:
            raise ModelArtifactError(ModelArtifactReason.UNREADABLE_MODEL, f"{path}: {e}") from e
        if booster.num_features() != len(FEATURES):
            raise ModelArtifactError(
                ModelArtifactReason.FEATURE_MISMATCH,
                f"{path}: model has {booster.num_features()} features, code has {len(FEATURES)}",
            )
        # One thread: a single row is faster without thread start-up.
        booster.set_param({"nthread": 1})
        logger.info(
            "loaded risk model %s (version %s, target %s)", path, version, card.get("target")
        )
        return cls(booster, card, version)

    def score(self, features: dict[str, float | None], top_k: int = 5) -> RiskScore:
        """Score one patient; missing or None features are passed as missing (never imputed)."""
        row = np.array([[_as_float(features.get(name)) for name in FEATURES]], dtype=np.float32)
        dmat = xgb.DMatrix(row, missing=np.nan, feature_names=list(FEATURES))
        contribs = self._booster.predict(dmat, pred_contribs=True)[0]
        margin = float(contribs.sum())  # per-feature SHAP values plus the bias add to the margin
        probability = 1.0 / (1.0 + math.exp(-margin))
        order = np.argsort(-np.abs(contribs[:-1]), kind="stable")[: max(top_k, 0)]
        top = [
            Contribution(
                feature=FEATURES[i],
                value=None if math.isnan(row[0, i]) else float(row[0, i]),
                contribution=float(contribs[i]),
                direction=DirectionValues.RAISES if contribs[i] > 0 else DirectionValues.LOWERS,
            )
            for i in order
            if contribs[i] != 0.0
        ]
        return RiskScore(probability=probability, top_features=top)

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        """Return probabilities for a (n, len(FEATURES)) matrix with NaN for missing values."""
        return np.asarray(self._booster.inplace_predict(matrix, missing=np.nan), dtype=float)


def _as_float(value: float | None) -> float:
    if value is None:
        return math.nan
    return float(value)


# --- training ------------------------------------------------------------------------------

ModelCard = dict[str, Any]
BiomarkerFn = Callable[[Path], dict[str, float]]

TARGETS: dict[str, str] = {
    "ventilation_14d": "invasive mechanical ventilation within 14 days of the CT",
    "icu_admission": "ICU admission after the CT",
}
SYNTHETIC_LABEL = (
    "SYNTHETIC DATA: measured on a generated cohort; proves the plumbing, not clinical validity"
)
OPERATING_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 10))
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


def dicom_biomarkers(study_dir: Path) -> dict[str, float]:
    """Quantify one study's CT series with the threshold quantifier of :mod:`inference`."""
    from inference.biomarkers import quantify_threshold
    from inference.volume import load_series

    volume = load_series(Path(study_dir))
    return quantify_threshold(volume.hu, volume.spacing_mm).as_dict()


def build_training_table(
    cohort_dir: Path,
    target: str = "ventilation_14d",
    biomarker_fn: BiomarkerFn | None = None,
    window_h: float = 72.0,
    workers: int = 1,
) -> TrainingTable:
    """Read a cohort (manifest, FHIR bundles, outcomes) into a feature table for ``target``.

    Clinical features come from the FHIR bundles at each ``ct_time``; imaging biomarkers from
    ``biomarker_fn(study_dir)`` (default :func:`dicom_biomarkers`, in ``workers`` processes).
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
        uid = str(study["study_uid"])
        if uid not in outcomes:
            raise TrainingDataError(TrainingDataReason.MISSING_OUTCOME, f"no outcome for {uid}")
        ctx = ClinicalContext()
        bundle = _read_json(cohort_dir / study["fhir_bundle"])
        for entry in bundle.get("entry") or []:
            try:
                ctx = ctx.apply(entry.get("resource"))
            except FhirRejected as e:
                rejections[e.reason.value] += 1
        at = _aware(datetime.fromisoformat(str(study["ct_time"]).replace("Z", "+00:00")))
        rows.append((uid, clinical_features(ctx, at, window_h), outcomes[uid], cohort_dir / study["study_dir"]))
    imaging = _all_biomarkers([r[3] for r in rows], biomarker_fn, workers)
    uids, vectors, labels = [], [], []
    for (uid, clinical, label, _), bio in zip(rows, imaging, strict=True):
        if bio is None:
            excluded["series_rejected"] += 1
            continue
        vector = feature_vector(bio, clinical)
        uids.append(uid)
        vectors.append([_as_float(vector[name]) for name in FEATURES])
        labels.append(label)
    matrix = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), len(FEATURES))
    return TrainingTable(uids, matrix, np.asarray(labels, dtype=np.int32), dict(excluded), dict(rejections))


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
    biomarker_fn: BiomarkerFn | None = None,
    biomarker_source: str = "inference.biomarkers.quantify_threshold over the cohort's DICOM",
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
        table.matrix[train_idx], label=labels[train_idx], missing=np.nan, feature_names=list(FEATURES)
    )
    folds = stratified_folds(labels[train_idx], CV_FOLDS, rng)
    history = xgb.cv(
        params, dtrain, MAX_BOOST_ROUNDS, folds=folds, early_stopping_rounds=30, seed=seed,
        as_pandas=False,
    )
    rounds = len(history["test-logloss-mean"])
    booster = xgb.train(params, dtrain, num_boost_round=rounds)
    raw = bytes(booster.save_raw(raw_format="ubj"))
    probs = booster.predict(xgb.DMatrix(table.matrix[test_idx], missing=np.nan, feature_names=list(FEATURES)))
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
        biomarker_source=biomarker_source if biomarker_fn is not None else
        "inference.biomarkers.quantify_threshold over the cohort's DICOM",
    )
    card["training_time_s"] = round(time.perf_counter() - started, 3)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(raw)
    card_path(out_path).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    logger.info("trained %s version %s: test AUC %s", out_path, card["version"], card["metrics"]["auc"])
    return card
