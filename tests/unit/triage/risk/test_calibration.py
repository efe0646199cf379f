"""Calibration slope and intercept on the log-odds scale, and the logistic site layer."""

from __future__ import annotations

import numpy as np
import pytest

from triage.risk.calibration import (
    LogisticRecalibration,
    calibration_in_the_large,
    fit_intercept_slope,
    logit,
    sigmoid,
)

pytestmark = pytest.mark.unit


def _outcomes(probs: np.ndarray, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(len(probs)) < probs).astype(float)


def test_recovers_a_known_intercept_and_slope() -> None:
    rng = np.random.default_rng(3)
    predicted = sigmoid(rng.normal(-1.5, 1.2, 40_000))
    truth = sigmoid(0.4 + 0.6 * logit(predicted))  # predictions too extreme, too low
    a, b = fit_intercept_slope(predicted, _outcomes(truth, 4))
    assert a == pytest.approx(0.4, abs=0.06) and b == pytest.approx(0.6, abs=0.04)


def test_calibrated_predictions_have_slope_one_and_no_offset() -> None:
    predicted = sigmoid(np.random.default_rng(5).normal(-1.0, 1.0, 40_000))
    labels = _outcomes(predicted, 6)
    assert fit_intercept_slope(predicted, labels)[1] == pytest.approx(1.0, abs=0.05)
    assert calibration_in_the_large(predicted, labels) == pytest.approx(0.0, abs=0.04)
    assert calibration_in_the_large(predicted / 3, labels) > 0.5  # under-prediction


def test_flat_predictions_have_no_slope() -> None:
    with pytest.raises(ValueError, match="same"):
        fit_intercept_slope(np.full(100, 0.2), _outcomes(np.full(100, 0.5), 1))
    with pytest.raises(ValueError, match="both outcomes"):
        calibration_in_the_large(np.full(10, 0.2), np.zeros(10))


def test_logistic_layer_corrects_a_shifted_model_and_round_trips() -> None:
    rng = np.random.default_rng(8)
    truth = sigmoid(rng.normal(-1.0, 1.0, 30_000))
    labels = _outcomes(truth, 9)
    shifted = sigmoid(logit(truth) - 1.0)
    layer = LogisticRecalibration.fit(shifted, labels)
    assert fit_intercept_slope(layer.apply(shifted), labels)[1] == pytest.approx(1.0, abs=0.05)
    assert LogisticRecalibration.from_dict(layer.to_dict()) == layer
    with pytest.raises(ValueError):
        LogisticRecalibration.from_dict({"method": "logistic", "intercept": 0.0, "slope": -1})
    with pytest.raises(ValueError):
        LogisticRecalibration.from_dict({"method": "isotonic"})
