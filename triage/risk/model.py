"""Risk models: XGBoost binary classifiers, their artifact pair and fast, calibrated scoring.

Artifacts: ``<name>.ubj`` (XGBoost universal binary JSON, never pickle) and ``<name>.card.json``
(the model card: version, features with units and codes, training data and its hash, metrics
labelled real / semi-synthetic / synthetic, calibration, operating points). The version is a
short hash of the model bytes and the calibration map, so neither can change unnoticed.

Training lives elsewhere: :mod:`triage.risk_training` (real Mexico data + semi-synthetic
imaging, the shipped models) and :mod:`triage.risk_synthetic` (the synthetic demo cohort).
:meth:`RiskModel.score` scores one patient in well under a millisecond.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from triage.exceptions import ModelArtifactError, ModelArtifactReason
from triage.fhir.features import FEATURES
from triage.risk.calibration import LogisticRecalibration
from triage.risk.evaluation import IsotonicCalibration
from triage.risk.marginal import Background
from triage.risk.published import PublishedPoints

logger = logging.getLogger(__name__)

CARD_SUFFIX = ".card.json"
VERSION_HEX_CHARS = 12
SYNTHETIC_LABEL = (
    "SYNTHETIC DATA: measured on a generated cohort; proves the plumbing, not clinical validity"
)
#: Not a model feature: how many chronic conditions a site records without naming them.
COUNT_FEATURE = "comorbidity_count"
OPERATING_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 10))


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


SiteLayer = IsotonicCalibration | LogisticRecalibration
SITE_CALIBRATION_HEX_CHARS = 8


def site_calibration_id(site_calibration: Mapping[str, Any]) -> str:
    """Short hash of a site calibration block (the part of the version after ``+site.``)."""
    text = json.dumps(site_calibration, sort_keys=True).encode("utf-8")
    return hashlib.sha256(text).hexdigest()[:SITE_CALIBRATION_HEX_CHARS]


def recalibrated_version(base_version: str, site_calibration: Mapping[str, Any]) -> str:
    """The version of a model with a site's calibration layer: ``<base>+site.<id>``."""
    return f"{base_version}+site.{site_calibration_id(site_calibration)}"


def site_layer(site_calibration: Mapping[str, Any]) -> SiteLayer:
    """The calibration layer of a card's ``site_calibration`` block; ValueError if malformed."""
    layer = site_calibration.get("layer")
    if not isinstance(layer, dict):
        raise ValueError("site_calibration has no 'layer' map")
    if layer.get("method") == "logistic":
        return LogisticRecalibration.from_dict(layer)
    return IsotonicCalibration.from_dict(layer)


def card_path(model_path: Path) -> Path:
    """Return the card of a model path: ``x/ventilation.ubj`` -> ``x/ventilation.card.json``."""
    return model_path.with_name(model_path.stem + CARD_SUFFIX)


def model_version(
    model_bytes: bytes,
    calibration: Mapping[str, Any] | None = None,
    marginalisation: Mapping[str, Any] | None = None,
    published: Mapping[str, Any] | None = None,
) -> str:
    """A model's version: SHA-256 prefix of its bytes, calibration, background, published points."""
    digest = hashlib.sha256(model_bytes)
    for block in (calibration, marginalisation, published):
        if block is not None:
            digest.update(json.dumps(block, sort_keys=True).encode("utf-8"))
    return digest.hexdigest()[:VERSION_HEX_CHARS]


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


def write_artifact(out_path: Path, model_bytes: bytes, card: Mapping[str, Any]) -> None:
    """Write ``out_path`` (.ubj) and its card beside it."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(model_bytes)
    card_path(out_path).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


class RiskModel:
    """A loaded, checked risk model. Build with :meth:`load`."""

    def __init__(
        self,
        booster: xgb.Booster,
        card: dict[str, Any],
        version: str,
        calibration: IsotonicCalibration | None = None,
        site: SiteLayer | None = None,
        background: Background | None = None,
        published: PublishedPoints | None = None,
    ) -> None:
        self._booster = booster
        self.card = card
        self.version = version
        self.calibration = calibration
        self.site = site
        self.background = background
        #: weights of fields the model never learned, from a published score (death models)
        self.published = published
        self.features: tuple[str, ...] = FEATURES
        self.target: str = str(card.get("target", "ventilation_14d"))

    @classmethod
    def load(cls, path: Path) -> RiskModel:
        """Load ``<name>.ubj`` and its card; check the card's features equal :data:`FEATURES`.

        Raises :class:`ModelArtifactError` (missing file or card, feature mismatch, a model whose
        bytes and calibration do not hash to the card's version, a malformed calibration map, or
        an unreadable model).
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
        calibration_map = card.get("calibration")
        version = model_version(
            raw, calibration_map, card.get("marginalisation"), card.get("published_points")
        )
        background = None
        published = None
        if card.get("published_points") is not None:
            try:
                published = PublishedPoints.from_dict(card["published_points"])
            except (ValueError, TypeError, AttributeError) as e:
                raise ModelArtifactError(ModelArtifactReason.INVALID_CARD, f"{path}: {e}") from e
        if card.get("marginalisation") is not None:
            try:
                background = Background.from_dict(card["marginalisation"])
            except (ValueError, TypeError, AttributeError) as e:
                raise ModelArtifactError(ModelArtifactReason.INVALID_CARD, f"{path}: {e}") from e
        site = None
        if card.get("site_calibration") is not None:
            try:
                site = site_layer(card["site_calibration"])
            except (ValueError, TypeError, AttributeError) as e:
                raise ModelArtifactError(ModelArtifactReason.INVALID_CARD, f"{path}: {e}") from e
            version = recalibrated_version(version, card["site_calibration"])
        if card.get("version") != version:
            raise ModelArtifactError(
                ModelArtifactReason.VERSION_MISMATCH,
                f"{path}: bytes and calibration hash to {version}, card says {card.get('version')}",
            )
        calibration = None
        if calibration_map is not None:
            try:
                calibration = IsotonicCalibration.from_dict(calibration_map)
            except (ValueError, TypeError, AttributeError) as e:
                raise ModelArtifactError(ModelArtifactReason.INVALID_CARD, f"{path}: {e}") from e
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
        return cls(booster, card, version, calibration, site, background, published)

    @property
    def base_version(self) -> str:
        """The version without a site layer (``<base>`` of ``<base>+site.<id>``)."""
        return self.version.split("+", 1)[0]

    def with_site_calibration(self, site_calibration: Mapping[str, Any] | None) -> RiskModel:
        """The same booster with a site's calibration layer instead of any it had (None: none).

        The layer replaces one loaded from the card, never stacks (as ``risk recalibrate``
        writes it). Version ``<base>+site.<id>``, the one the recalibrated folder's card holds,
        so alerts name the calibration. ValueError for a malformed block.
        """
        drop = ("site_calibration", "base_version", "version")
        card = {k: v for k, v in self.card.items() if k not in drop}
        layer: SiteLayer | None = None
        version = self.base_version
        if site_calibration is not None:
            try:
                layer = site_layer(site_calibration)
            except (TypeError, AttributeError, KeyError) as e:
                raise ValueError(f"malformed site calibration: {e}") from e
            version = recalibrated_version(self.base_version, site_calibration)
            card.update(site_calibration=dict(site_calibration), base_version=self.base_version)
        card["version"] = version
        return RiskModel(
            self._booster, card, version, self.calibration, layer, self.background, self.published
        )

    def score(self, features: Mapping[str, float | None], top_k: int = 5) -> RiskScore:
        """Score one patient; missing or None features are never imputed.

        With a background in the card, unrecorded clinical fields are averaged over it
        (:mod:`triage.risk.marginal`; ``features["comorbidity_count"]`` narrows the average when
        no condition is recorded); without one XGBoost's missing branch decides. The probability
        is calibrated when the card has a calibration map; the contributions are XGBoost's SHAP
        values on the uncalibrated log-odds, averaged over the same reference patients (the
        calibration is monotone, so their signs and ranking keep their meaning).
        """
        values = [_as_float(features.get(name)) for name in FEATURES]
        row = np.array([values], dtype=np.float32)
        own = np.array(values, dtype=float)
        weights = np.ones(1)
        if self.background is not None and _unrecorded(row[0], self.background.fields):
            count = _as_float(features.get(COUNT_FEATURE))
            weights = self.background.weights_for(row[0], count)
            row = self.background.filled(row[0])
        dmat = xgb.DMatrix(row, missing=np.nan, feature_names=list(FEATURES))
        every = self._booster.predict(dmat, pred_contribs=True)
        contribs = weights @ every
        margins = every.sum(axis=1)  # per-feature SHAP values plus the bias add to the margin
        raw = float(weights @ (1.0 / (1.0 + np.exp(-margins))))
        probability = float(self.calibrate(np.array([raw]), own[None])[0])
        # A feature the patient's record does not have is never an explanation.
        recorded = np.array([not math.isnan(v) for v in values])
        explained = [
            (FEATURES[i], values[i], float(contribs[i]))
            for i in range(len(FEATURES))
            if contribs[i] != 0.0 and recorded[i]
        ]
        if self.published is not None:  # recorded fields that add published points
            explained += self.published.explained(own)
        explained.sort(key=lambda item: -abs(item[2]))
        top = [
            Contribution(
                feature=name,
                value=value,
                contribution=contribution,
                direction=DirectionValues.RAISES if contribution > 0 else DirectionValues.LOWERS,
            )
            for name, value, contribution in explained[: max(top_k, 0)]
        ]
        return RiskScore(probability=probability, top_features=top)

    def calibrate(self, raw: np.ndarray, matrix: np.ndarray | None = None) -> np.ndarray:
        """Raw probabilities -> calibration, published points, then the site's layer.

        The card's calibration first; then, when the card has published points and ``matrix``
        (the rows' own values) is given, the points of their recorded fields; then the site's
        layer, if any.
        """
        probs = raw if self.calibration is None else self.calibration.apply(raw)
        if self.published is not None and matrix is not None:
            probs = self.published.apply(probs, matrix)
        return probs if self.site is None else self.site.apply(probs)

    def predict_raw(self, matrix: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """Uncalibrated probabilities for a (n, len(FEATURES)) matrix, NaN for missing.

        Unrecorded fields are averaged over the card's background when it has one; ``counts``
        (comorbidity counts, NaN unknown) narrows that average.
        """
        if self.background is None:
            return self._branch(matrix)
        return self.background.predict(self._branch, matrix, counts)

    def _branch(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self._booster.inplace_predict(matrix, missing=np.nan), dtype=float)

    def predict_proba(self, matrix: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """Probabilities (calibrated when the card has maps) for a (n, len(FEATURES)) matrix."""
        return self.calibrate(self.predict_raw(matrix, counts), matrix)

    def contributions(self, matrix: np.ndarray, counts: np.ndarray | None = None) -> np.ndarray:
        """SHAP contributions (n, len(FEATURES) + 1; last column the bias) for many rows.

        Rows with unrecorded fields get the contributions averaged over the background, as
        :meth:`score` does.
        """
        matrix = np.asarray(matrix, dtype=np.float32)
        out = self._shap(matrix)
        if self.background is None:
            return out
        given = np.full(len(matrix), np.nan) if counts is None else np.asarray(counts, float)
        seen: dict[bytes, np.ndarray] = {}
        for i, row in enumerate(matrix):
            if not _unrecorded(row, self.background.fields):
                continue
            key = row.tobytes() + np.float64(given[i]).tobytes()
            if key not in seen:
                weights = self.background.weights_for(row, float(given[i]))
                seen[key] = weights @ self._shap(self.background.filled(row))
            out[i] = seen[key]
        return out

    def _shap(self, matrix: np.ndarray) -> np.ndarray:
        dmat = xgb.DMatrix(matrix, missing=np.nan, feature_names=list(FEATURES))
        return np.asarray(self._booster.predict(dmat, pred_contribs=True))


def _unrecorded(row: np.ndarray, fields: tuple[str, ...]) -> bool:
    return any(math.isnan(row[FEATURES.index(f)]) for f in fields)


def _as_float(value: float | None) -> float:
    if value is None:
        return math.nan
    return float(value)
