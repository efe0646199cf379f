"""Evaluation helpers: isotonic calibration, logistic baseline, bootstrap AUC, thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from triage.risk.evaluation import (
    IsotonicCalibration,
    LogisticModel,
    auc_bootstrap_ci,
    brier,
    roc_auc,
    summary_metrics,
    threshold_for_sensitivity,
)

pytestmark = pytest.mark.unit


def test_isotonic_pools_violators_by_hand() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    labels = np.array([0, 1, 0, 0, 1, 1])
    cal = IsotonicCalibration.fit(scores, labels)
    # (0.1: 0) then (0.2, 0.3, 0.4 pooled: 1/3) then (0.5, 0.6 pooled: 1)
    assert cal.x == pytest.approx((0.1, 0.3, 0.55))
    assert cal.y == pytest.approx((0.0, 1 / 3, 1.0), abs=1e-6)
    # linear between points; never 0 or 1 (floor 0.001)
    assert cal.apply(np.array([0.0, 0.2, 0.3, 0.9])) == pytest.approx(
        [0.001, 1 / 6, 1 / 3, 0.999], abs=1e-5
    )
    again = IsotonicCalibration.from_dict(cal.to_dict())
    assert again == cal
    with pytest.raises(ValueError, match="monotone"):
        IsotonicCalibration.from_dict({"method": "isotonic", "x": [0.1, 0.2], "y": [0.5, 0.1]})
    with pytest.raises(ValueError, match="isotonic"):
        IsotonicCalibration.from_dict({"method": "platt", "a": 1.0})


def test_isotonic_fixes_a_miscalibrated_score() -> None:
    rng = np.random.default_rng(0)
    true_p = rng.uniform(0, 1, 20_000)
    labels = (rng.random(true_p.size) < true_p).astype(int)
    skewed = true_p**3  # ranks right, probabilities far too low
    cal = IsotonicCalibration.fit(skewed[:10_000], labels[:10_000])
    fixed = cal.apply(skewed[10_000:])
    assert np.all(np.diff(cal.y) >= 0)
    assert brier(labels[10_000:], fixed) < brier(labels[10_000:], skewed[10_000:]) - 0.02
    assert summary_metrics(labels[10_000:], fixed, n_boot=0, seed=0)["ece"] < 0.03


def test_logistic_model_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20_000, 2))
    logit = -1.0 + 1.5 * x[:, 0] - 0.5 * x[:, 1]
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(int)
    x_missing = x.copy()
    x_missing[:50, 1] = np.nan  # NaN -> the training mean, never a crash
    model = LogisticModel(l2=0.0).fit(x_missing, y)
    assert model.coef is not None and model.scale is not None
    per_unit = model.coef[1:] / model.scale
    assert per_unit == pytest.approx([1.5, -0.5], abs=0.08)
    probs = model.predict_proba(x)
    assert roc_auc(y, probs) > 0.8 and np.all((probs > 0) & (probs < 1))
    with pytest.raises(RuntimeError):
        LogisticModel().predict_proba(x)


def test_bootstrap_interval_brackets_the_auc() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 2000)
    scores = labels + rng.normal(0, 1.5, labels.size)
    auc = roc_auc(labels, scores)
    ci = auc_bootstrap_ci(labels, scores, n_boot=300, seed=3)
    assert auc is not None and ci is not None
    assert ci[0] < auc < ci[1] and 0.01 < ci[1] - ci[0] < 0.1
    assert auc_bootstrap_ci(labels, scores, n_boot=300, seed=3) == ci  # seeded
    assert auc_bootstrap_ci(np.ones(5, dtype=int), np.arange(5.0), 50, 0) is None


def test_threshold_for_sensitivity() -> None:
    labels = np.array([1, 1, 1, 1, 0, 0])
    probs = np.array([0.9, 0.7, 0.4, 0.2, 0.5, 0.1])
    assert threshold_for_sensitivity(labels, probs, 0.5) == 0.7
    assert threshold_for_sensitivity(labels, probs, 0.8) == 0.2
    assert threshold_for_sensitivity(labels, probs, 1.0) == 0.2
    assert threshold_for_sensitivity(np.zeros(3, dtype=int), probs[:3], 0.8) == 1.0
