"""Held-out evaluation of risk models: splits, metrics, calibration and baselines (numpy/scipy).

Everything here is a pure function or a small class over numpy arrays, so the training code,
the benchmarks and the tests share one implementation:

- splits: :func:`stratified_split`, :func:`stratified_folds`;
- metrics: :func:`roc_auc` (Mann-Whitney), :func:`auc_bootstrap_ci`, :func:`brier`,
  :func:`calibration_error` (ECE, equal-width bins), :func:`operating_point`;
- calibration: :class:`IsotonicCalibration` (pool-adjacent-violators, stored as JSON points);
- baselines: :class:`LogisticModel` (L2-penalised logistic regression, L-BFGS), used for the
  "age alone", "comorbidity count" and multivariable logistic-regression baselines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.stats import rankdata

ECE_BINS = 10
PROBABILITY_FLOOR = 1e-3


def stratified_split(
    labels: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Return (train, test) indices with each class split in the same proportion."""
    test: list[int] = []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_test = max(1, round(test_fraction * len(idx))) if len(idx) > 1 else 0
        test.extend(int(i) for i in idx[:n_test])
    test_idx = np.sort(np.asarray(test, dtype=np.int64))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def stratified_folds(
    labels: np.ndarray, n_folds: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return ``n_folds`` (train, validation) index pairs, classes dealt round-robin."""
    fold_of = np.empty(len(labels), dtype=np.int64)
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        fold_of[idx] = np.arange(len(idx)) % n_folds
    everything = np.arange(len(labels))
    return [(everything[fold_of != k], everything[fold_of == k]) for k in range(n_folds)]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Return the ROC AUC (Mann-Whitney, ties counted half); None without both classes."""
    labels = np.asarray(labels)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_bootstrap_ci(
    labels: np.ndarray, scores: np.ndarray, n_boot: int, seed: int, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the AUC (patients resampled with replacement)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    aucs = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        auc = roc_auc(labels[idx], scores[idx])
        if auc is not None:
            aucs.append(auc)
    if not aucs:
        return None
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(aucs, [tail, 100 - tail])
    return float(low), float(high)


def brier(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean squared error of the probabilities."""
    return float(np.mean((np.asarray(probs, dtype=float) - labels) ** 2))


def calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """Return the expected calibration error over ``bins`` equal-width probability bins."""
    which = np.minimum((np.asarray(probs) * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(float(probs[mask].mean()) - float(labels[mask].mean()))
    return total


def operating_point(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, Any]:
    """Return sensitivity, specificity, PPV and alerts per 100 studies at ``threshold``."""
    alert = probs >= threshold
    tp = int((alert & (labels == 1)).sum())
    fp = int((alert & (labels == 0)).sum())
    fn = int((~alert & (labels == 1)).sum())
    tn = int((~alert & (labels == 0)).sum())
    return {
        "threshold": threshold,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "alerts_per_100": round(100.0 * (tp + fp) / max(len(labels), 1), 2),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def threshold_for_sensitivity(labels: np.ndarray, probs: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity on (labels, probs) is at least ``target``."""
    positives = np.sort(probs[labels == 1])[::-1]
    if positives.size == 0:
        return 1.0
    k = max(int(np.ceil(target * positives.size)) - 1, 0)
    return float(positives[k])


def summary_metrics(
    labels: np.ndarray, probs: np.ndarray, *, n_boot: int, seed: int
) -> dict[str, Any]:
    """AUC with its bootstrap 95% interval, Brier score and ECE, rounded for a card."""
    auc = roc_auc(labels, probs)
    ci = auc_bootstrap_ci(labels, probs, n_boot, seed) if n_boot > 0 else None
    return {
        "n": len(labels),
        "n_positive": int(labels.sum()),
        "auc": None if auc is None else round(auc, 4),
        "auc_ci95": None if ci is None else [round(ci[0], 4), round(ci[1], 4)],
        "brier": round(brier(labels, probs), 4),
        "ece": round(calibration_error(labels, probs), 4),
    }


@dataclass(frozen=True)
class IsotonicCalibration:
    """Monotone map raw probability -> calibrated probability, linear between fitted points.

    Fitted by pool-adjacent-violators on a calibration split; each pooled block becomes one
    point (mean raw score, observed rate). Stored in the model card as plain numbers.
    """

    x: tuple[float, ...]
    y: tuple[float, ...]

    @classmethod
    def fit(
        cls, scores: np.ndarray, labels: np.ndarray, *, merge_ties: bool = False
    ) -> IsotonicCalibration:
        """Fit on raw scores and 0/1 labels (at least two distinct scores).

        ``merge_ties`` pools patients with the same score into one weighted point first and
        keeps each block's lowest and highest score (a step between blocks, not a line through
        block means), so a score maps to its own block's rate: needed for a table with few
        distinct scores (a site's age bands). The shipped maps were fitted without it.
        """
        xs, ys, ws = np.asarray(scores, dtype=float), np.asarray(labels, dtype=float), None
        if merge_ties:
            xs, inverse, counts = np.unique(xs, return_inverse=True, return_counts=True)
            ys = np.bincount(inverse, weights=ys) / counts
            ws = counts.astype(float)
        order = np.argsort(xs, kind="stable")
        xs, ys = xs[order], ys[order]
        weights = np.ones_like(xs) if ws is None else ws[order]
        # Blocks: sums of y and x, weight, lowest and highest x; merge while a block's mean
        # exceeds the next one's (pool-adjacent-violators).
        blocks: list[list[float]] = []
        for x, y, w in zip(xs, ys, weights, strict=True):
            blocks.append([y * w, x * w, w, x, x])
            while (
                len(blocks) > 1 and blocks[-2][0] / blocks[-2][2] >= blocks[-1][0] / blocks[-1][2]
            ):
                last = blocks.pop()
                blocks[-1] = [
                    blocks[-1][0] + last[0],
                    blocks[-1][1] + last[1],
                    blocks[-1][2] + last[2],
                    blocks[-1][3],
                    last[4],
                ]
        rates = [b[0] / b[2] for b in blocks]
        if not merge_ties:
            return cls(_rounded(b[1] / b[2] for b in blocks), _rounded(rates))
        points = sorted({(b[k], r) for b, r in zip(blocks, rates, strict=True) for k in (3, 4)})
        return cls(_rounded(p[0] for p in points), _rounded(p[1] for p in points))

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, kept within [PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR].

        Outside the fitted range the end points hold. The floor keeps an end block whose
        calibration rows had no (or only) events from claiming certainty.
        """
        calibrated = np.interp(np.asarray(scores, dtype=float), self.x, self.y)
        return np.clip(calibrated, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the model card."""
        return {"method": "isotonic", "x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IsotonicCalibration:
        """Rebuild from :meth:`to_dict`; raises ValueError on a malformed map."""
        x, y = data.get("x"), data.get("y")
        if data.get("method") != "isotonic" or not isinstance(x, list) or not isinstance(y, list):
            raise ValueError("calibration must be {'method': 'isotonic', 'x': [...], 'y': [...]}")
        if len(x) != len(y) or not x or np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0):
            raise ValueError("calibration points must be non-empty, equal length and monotone")
        return cls(tuple(float(v) for v in x), tuple(float(v) for v in y))


class LogisticModel:
    """L2-penalised logistic regression on standardised columns; NaN -> the training mean."""

    def __init__(self, l2: float = 1e-3) -> None:
        self.l2 = l2
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.coef: np.ndarray | None = None

    def fit(self, matrix: np.ndarray, labels: np.ndarray) -> LogisticModel:
        """Fit by L-BFGS on the mean log-loss plus ``l2/2 * |w|^2`` (intercept not penalised)."""
        x = np.asarray(matrix, dtype=float)
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(np.where(np.isnan(x).all(axis=0), 0.0, x), axis=0)
        self.mean = np.nan_to_num(mean)
        filled = np.where(np.isnan(x), self.mean, x)
        scale = filled.std(axis=0)
        self.scale = np.where(scale > 0, scale, 1.0)
        design = np.column_stack([np.ones(len(x)), (filled - self.mean) / self.scale])
        y = np.asarray(labels, dtype=float)

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            z = design @ w
            p = 1.0 / (1.0 + np.exp(-z))
            value = np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * self.l2 * np.sum(w[1:] ** 2)
            grad = design.T @ (p - y) / len(y)
            grad[1:] += self.l2 * w[1:]
            return float(value), grad

        result = minimize(loss, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B")
        self.coef = result.x
        return self

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities for new rows (same columns as in :meth:`fit`)."""
        if self.coef is None or self.mean is None or self.scale is None:
            raise RuntimeError("LogisticModel.predict_proba before fit")
        x = np.asarray(matrix, dtype=float)
        filled = np.where(np.isnan(x), self.mean, x)
        z = self.coef[0] + ((filled - self.mean) / self.scale) @ self.coef[1:]
        return 1.0 / (1.0 + np.exp(-z))


def _rounded(values: Any) -> tuple[float, ...]:
    return tuple(round(float(v), 6) for v in values)


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else round(num / den, 4)
