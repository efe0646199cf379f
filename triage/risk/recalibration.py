"""Site recalibration: a calibration layer fitted on a site's own scored patients, no retraining.

``ctriage risk recalibrate --csv LOCAL_OUTCOMES.csv --out DIR`` reads a validation table
(:mod:`triage.risk.validation`: the scoring columns plus ``ventilation`` / ``icu`` / ``death``),
scores it with the models in force and fits, per outcome with known outcomes:

- **logistic** (``sigmoid(a + b logit p)``) from :data:`MIN_EVENTS` events and non-events on;
- **isotonic** (pool-adjacent-violators) instead when the outcome has at least
  :data:`ISOTONIC_MIN_EVENTS` events and as many non-events (enough to estimate a free curve)
  *and* it predicts the site's held-out patients better: lower mean log loss over 5 stratified
  folds of the site's own table (:func:`cross_validated_log_loss`);
- refused below that (:class:`ValidationRefused` ``too_few_events`` / ``too_few_non_events``):
  100 events is the usual minimum for a calibration assessment (Van Calster et al. 2016,
  Riley et al. 2021), and a layer fitted on fewer would move every patient's risk on noise.

The layer is applied after the model's own calibration, to the fused and clinical-only model
of that outcome alike (it corrects the site's event rate and spread, which both share). ``DIR``
receives every model: a recalibrated one has the card's ``site_calibration`` block (method,
layer, the rows it was fitted on, the table's hash) and the version ``<base>+site.<id>``, so
an alert's ``model_version`` names the calibration; outcomes the table lacks are copied as
they are. ``ctriage risk score --models DIR`` and the worker load ``DIR`` like the shipped one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from triage.exceptions import (
    ConfigRejected,
    ConfigRejectionReason,
    ValidationReason,
    ValidationRefused,
)
from triage.risk.calibration import EPSILON, LogisticRecalibration
from triage.risk.card import CLINICAL_SUFFIX, RISK_COLUMNS
from triage.risk.evaluation import IsotonicCalibration, stratified_folds
from triage.risk.model import CARD_SUFFIX, RiskModel, load_card, recalibrated_version
from triage.risk.scoring import MODELS_DIR, RiskPanel
from triage.risk.validation import ValidationTable, score_table

MIN_EVENTS = 100
ISOTONIC_MIN_EVENTS = 500
LAYER_CV_FOLDS = 5
LAYER_CV_SEED = 2020


def fit_layer(probs: np.ndarray, labels: np.ndarray) -> IsotonicCalibration | LogisticRecalibration:
    """The site layer for one outcome (see the module docstring); raises ValidationRefused."""
    events = int(labels.sum())
    non_events = len(labels) - events
    if events < MIN_EVENTS:
        raise ValidationRefused(
            ValidationReason.TOO_FEW_EVENTS,
            f"{events} events; recalibration needs at least {MIN_EVENTS}",
        )
    if non_events < MIN_EVENTS:
        raise ValidationRefused(
            ValidationReason.TOO_FEW_NON_EVENTS,
            f"{non_events} patients without the event; recalibration needs at least {MIN_EVENTS}",
        )
    if min(events, non_events) >= ISOTONIC_MIN_EVENTS:
        losses = cross_validated_log_loss(probs, labels)
        if losses["isotonic"] < losses["logistic"]:
            return IsotonicCalibration.fit(probs, labels, merge_ties=True)
    return LogisticRecalibration.fit(probs, labels)


def cross_validated_log_loss(
    probs: np.ndarray, labels: np.ndarray, seed: int = LAYER_CV_SEED
) -> dict[str, float]:
    """Mean held-out log loss of each layer over :data:`LAYER_CV_FOLDS` stratified folds.

    An isotonic curve follows the site's table more closely than two numbers can; on weak
    discrimination its steps are noise and a new patient's risk jumps between them, which the
    held-out loss shows. The site's own table decides, fold by fold.
    """
    losses = {"isotonic": 0.0, "logistic": 0.0}
    folds = stratified_folds(labels, LAYER_CV_FOLDS, np.random.default_rng(seed))
    for train, held in folds:
        layers: dict[str, IsotonicCalibration | LogisticRecalibration] = {
            "isotonic": IsotonicCalibration.fit(probs[train], labels[train], merge_ties=True),
            "logistic": LogisticRecalibration.fit(probs[train], labels[train]),
        }
        for name, layer in layers.items():
            p = np.clip(layer.apply(probs[held]), EPSILON, 1.0 - EPSILON)
            y = labels[held]
            losses[name] -= float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return {name: loss / len(labels) for name, loss in losses.items()}


def recalibrate(
    table: ValidationTable,
    panel: RiskPanel,
    out_dir: Path,
    *,
    site: str,
    source_sha256: str,
    models_dir: Path = MODELS_DIR,
) -> dict[str, Any]:
    """Fit a layer per outcome the table has, write the model folder ``out_dir``.

    Returns what was done per outcome (method, rows, events, new versions). Raises
    :class:`ValidationRefused` when no outcome can be recalibrated; an outcome with too few
    events is reported as refused and its models are copied unchanged.
    """
    risks, _ = score_table(table, without_site_layers(panel))
    layers: dict[str, dict[str, Any]] = {}
    summary: dict[str, Any] = {"site": site, "outcomes": {}}
    for name, labels in table.outcomes.items():
        known = ~np.isnan(labels)
        y = labels[known]
        try:
            layer = fit_layer(risks[RISK_COLUMNS[name]][known], y)
        except ValidationRefused as e:
            summary["outcomes"][name] = {"refused": e.reason.value, "detail": e.detail}
            continue
        layers[name] = {
            "site": site,
            "layer": layer.to_dict(),
            "fitted_on": {"rows": int(known.sum()), "events": int(y.sum())},
            "table_sha256": source_sha256,
            "fitted_at": datetime.now(UTC).date().isoformat(),
            "applies": "after the model's own calibration",
        }
    if not layers:
        reasons = {n: o["refused"] for n, o in summary["outcomes"].items()}
        raise ValidationRefused(
            ValidationReason.TOO_FEW_EVENTS, f"no outcome can be recalibrated: {reasons}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in panel.fused:
        for artifact in (name, name + CLINICAL_SUFFIX):
            version = _write(Path(models_dir), out_dir, artifact, layers.get(name))
            if name in layers:
                entry = summary["outcomes"].setdefault(
                    name, {"method": layers[name]["layer"]["method"], **layers[name]["fitted_on"]}
                )
                entry.setdefault("versions", {})[artifact] = version
    return summary


def calibrated_model(model: RiskModel, calibration: Mapping[str, Any] | None) -> RiskModel:
    """``model`` with a hospital policy's site calibration (None: ``model`` as it is).

    ``calibration`` is ``{"base_version", "site_calibration"}`` (:func:`calibration_of`). The
    layer replaces any ``model`` had, never stacks. Raises :class:`ConfigRejected`:
    ``calibration_model_mismatch`` when it was fitted on another model (a layer moves the
    probabilities of the model it was fitted on, no other), ``invalid_calibration`` when the
    layer does not parse.
    """
    if calibration is None:
        return model
    base = calibration.get("base_version")
    if base != model.base_version:
        raise ConfigRejected(
            ConfigRejectionReason.CALIBRATION_MODEL_MISMATCH,
            f"the calibration was fitted on model {base}, this worker scores with "
            f"{model.base_version}: recalibrate on the model in force",
        )
    try:
        return model.with_site_calibration(calibration.get("site_calibration"))
    except ValueError as e:
        raise ConfigRejected(ConfigRejectionReason.INVALID_CALIBRATION, str(e)) from e


def calibration_of(model_path: Path) -> dict[str, Any]:
    """The calibration a recalibrated model (``DIR/ventilation.ubj``) puts in a policy.

    Raises :class:`ConfigRejected` ``invalid_calibration`` when the model has no site layer
    (a folder ``risk recalibrate`` did not write, or an outcome it refused); the model must
    load (:class:`ModelArtifactError` otherwise).
    """
    model = RiskModel.load(model_path)
    block = model.card.get("site_calibration")
    if block is None:
        raise ConfigRejected(
            ConfigRejectionReason.INVALID_CALIBRATION,
            f"{model_path} has no site calibration (write one with ctriage risk recalibrate)",
        )
    return {"base_version": model.base_version, "site_calibration": block}


def without_site_layers(panel: RiskPanel) -> RiskPanel:
    """The same models without any site layer (a new layer replaces an old one, never stacks)."""

    def strip(model: RiskModel) -> RiskModel:
        base = copy.copy(model)
        base.site = None
        return base

    return RiskPanel(
        {n: strip(m) for n, m in panel.fused.items()},
        {n: strip(m) for n, m in panel.clinical.items()},
    )


def file_digest(path: Path) -> str:
    """SHA-256 of the site's outcome table (kept in the card)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _write(models_dir: Path, out_dir: Path, artifact: str, block: dict[str, Any] | None) -> str:
    source = models_dir / f"{artifact}.ubj"
    card = load_card(source)
    shutil.copyfile(source, out_dir / source.name)
    if block is not None:
        base = RiskModel.load(source).version.split("+", 1)[0]
        card["site_calibration"] = block
        card["base_version"] = base
        card["version"] = recalibrated_version(base, block)
    (out_dir / f"{artifact}{CARD_SUFFIX}").write_text(
        json.dumps(card, indent=2) + "\n", encoding="utf-8"
    )
    RiskModel.load(out_dir / source.name)  # refuse to leave a folder that does not load
    return str(card["version"])
