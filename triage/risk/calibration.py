"""Logistic calibration on the log-odds scale: fit, measure and apply (numpy only).

Calibration of predicted probabilities ``p`` against outcomes ``y`` is read from
``logit(P(y = 1)) = a + b * logit(p)`` (Cox 1958; Van Calster et al., J Clin Epidemiol 2016):

- **calibration slope** ``b`` (``a`` fitted with it): 1 is ideal, below 1 predictions are too
  extreme, above 1 too timid;
- **calibration-in-the-large** ``a`` with ``b`` fixed at 1 (``logit(p)`` as an offset): 0 is
  ideal, positive means the model under-predicts the event rate.

:class:`LogisticRecalibration` is the same fit used as a site's calibration layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq

#: Probabilities are kept off 0 and 1 before taking the logit.
EPSILON = 1e-6
_NEWTON_STEPS = 100
#: A slope beyond this is not a calibration slope but predictions without usable spread.
MAX_SLOPE = 100.0


def logit(probs: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities clipped to ``[EPSILON, 1 - EPSILON]``."""
    p = np.clip(np.asarray(probs, dtype=float), EPSILON, 1.0 - EPSILON)
    return np.log(p / (1.0 - p))


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Inverse of :func:`logit`."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=float)))  # no overflow warning


def fit_intercept_slope(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood ``(a, b)`` of ``logit P(y) = a + b logit(p)`` (damped Newton).

    Raises ValueError when the slope cannot be estimated: predictions without spread (all
    equal) give a flat likelihood and a slope beyond :data:`MAX_SLOPE`.
    """
    z = logit(probs)
    y = np.asarray(labels, dtype=float)
    if np.ptp(z) < 1e-9:
        raise ValueError("every prediction is the same: no calibration slope")
    design = np.column_stack([np.ones_like(z), z])
    w = np.array([0.0, 1.0])
    loss = _log_loss(design @ w, y)
    for _ in range(_NEWTON_STEPS):
        mu = sigmoid(design @ w)
        hessian = design.T @ (design * (mu * (1.0 - mu))[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, design.T @ (y - mu))
        scale = 1.0
        while scale > 1e-6 and _log_loss(design @ (w + scale * step), y) > loss + 1e-12:
            scale /= 2.0
        w = w + scale * step
        loss = _log_loss(design @ w, y)
        if np.max(np.abs(scale * step)) < 1e-10:
            break
    if not abs(w[1]) <= MAX_SLOPE:
        raise ValueError(
            f"calibration slope {w[1]:.3g} is beyond {MAX_SLOPE}: predictions too flat"
        )
    return float(w[0]), float(w[1])


def _log_loss(z: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(np.logaddexp(0.0, z) - y * z))


def calibration_in_the_large(probs: np.ndarray, labels: np.ndarray) -> float:
    """Maximum-likelihood ``a`` of ``logit P(y) = a + logit(p)`` (slope fixed at 1).

    The score equation ``sum(y - sigmoid(a + logit p)) = 0`` is monotone in ``a``: solved by
    bracketing (robust where Newton steps overshoot on probabilities near 0 or 1).
    """
    z = logit(probs)
    y = np.asarray(labels, dtype=float)
    if y.min() == y.max():
        raise ValueError("calibration-in-the-large needs both outcomes")
    return float(brentq(lambda a: float(np.sum(y - sigmoid(a + z))), -60.0, 60.0, xtol=1e-10))


@dataclass(frozen=True)
class LogisticRecalibration:
    """``p -> sigmoid(intercept + slope * logit(p))``: a site's logistic calibration layer."""

    intercept: float
    slope: float

    @classmethod
    def fit(cls, probs: np.ndarray, labels: np.ndarray) -> LogisticRecalibration:
        """Fit on a site's predicted probabilities and observed 0/1 outcomes."""
        a, b = fit_intercept_slope(probs, labels)
        return cls(round(a, 6), round(b, 6))

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Recalibrated probabilities."""
        return sigmoid(self.intercept + self.slope * logit(probs))

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the model card."""
        return {"method": "logistic", "intercept": self.intercept, "slope": self.slope}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogisticRecalibration:
        """Rebuild from :meth:`to_dict`; raises ValueError on a malformed map."""
        a, b = data.get("intercept"), data.get("slope")
        if data.get("method") != "logistic" or not isinstance(a, int | float):
            raise ValueError("logistic calibration needs 'intercept' and 'slope' numbers")
        if not isinstance(b, int | float) or b <= 0:
            raise ValueError("a logistic calibration slope must be a positive number")
        return cls(float(a), float(b))
