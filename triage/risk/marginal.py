"""Fields a site does not record: average the model over them instead of guessing a branch.

XGBoost sends a missing value down one learned branch, so an unrecorded field is read as if it
were recorded as one side of a split: withholding diabetes moved the clinical ventilation
model's mean risk by +18 % on Mexico validation rows, cardiovascular disease moved death by +8 %.
A :class:`Background` removes that: for a row with unrecorded clinical fields the model is
scored on copies of the row whose unrecorded fields take the values of reference patients
(fully recorded Mexico fitting rows, drawn once at training and kept in the card), and the
probabilities are averaged. The average is conditional where it matters:

- **on age**: reference patients are weighted by a Gaussian kernel on age
  (:data:`AGE_BANDWIDTH_YEARS`), since comorbidities pile up with age;
- **on a comorbidity count**: a site that records how many chronic conditions a patient has but
  not which (the Dutch register's ``N_Comorbidities``) gives ``comorbidity_count``; when none of
  the conditions is recorded, only reference patients with that many (0, 1, 2, 3 or more) count.

The pneumonia flag is not averaged: the stream never has it at the CT time (it comes with the
diagnosis) and the models learned its absence from rows where it was withheld at random.
Decided on Mexico validation rows (early-stopping and calibration rows; not the test rows):
the mean risk moves at most 2 % when any one comorbidity or sex is withheld (missing branch: up
to 18 %), AUC within 0.01 of the branch; a known count recovers most of the AUC lost with the
history (death 0.768 -> 0.787, ICU 0.700 -> 0.714). docs/risk-validation.md has the figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from triage.fhir.features import FEATURES

AGE_BANDWIDTH_YEARS = 10.0
BACKGROUND_ROWS = 512
#: ``comorbidity_count`` is matched in these bins: 0, 1, 2, 3 or more
COUNT_CAP = 3
#: below this total kernel weight the age kernel is dropped (too few reference patients near)
MIN_WEIGHT = 5.0
_BATCH_ROWS = 65536


@dataclass(frozen=True)
class Background:
    """Reference patients the unrecorded fields are averaged over (unique rows and counts)."""

    fields: tuple[str, ...]
    conditions: tuple[str, ...]
    rows: np.ndarray
    weights: np.ndarray

    @classmethod
    def draw(
        cls,
        matrix: np.ndarray,
        candidates: np.ndarray,
        fields: tuple[str, ...],
        conditions: tuple[str, ...],
        rng: np.random.Generator,
        size: int = BACKGROUND_ROWS,
    ) -> Background:
        """Draw ``size`` of the ``candidates`` rows that record every field."""
        columns = [FEATURES.index(f) for f in fields]
        values = matrix[np.asarray(candidates)][:, columns]
        complete = values[~np.isnan(values).any(axis=1)]
        if len(complete) == 0:
            raise ValueError("no candidate row records every field")
        picked = complete[rng.choice(len(complete), min(size, len(complete)), replace=False)]
        unique, counts = np.unique(picked, axis=0, return_counts=True)
        return cls(tuple(fields), tuple(conditions), unique.astype(float), counts.astype(float))

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the model card (part of the model's version)."""
        return {
            "fields": list(self.fields),
            "conditions": list(self.conditions),
            "age_bandwidth_years": AGE_BANDWIDTH_YEARS,
            "count_cap": COUNT_CAP,
            # one reference patient per line of the card: values in ``fields`` order
            "rows": [" ".join(_compact(v) for v in row) for row in self.rows],
            "weights": [int(w) for w in self.weights],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Background:
        """Rebuild from :meth:`to_dict`; ValueError on a malformed block."""
        fields = tuple(str(f) for f in data.get("fields", []))
        conditions = tuple(str(f) for f in data.get("conditions", []))
        unknown = [f for f in (*fields, *conditions) if f not in FEATURES]
        if not fields or unknown or not set(conditions) <= set(fields):
            raise ValueError(f"marginalisation block: bad fields {fields} / {conditions}")
        try:
            rows = np.array([str(r).split() for r in data.get("rows", [])], dtype=float)
        except ValueError as e:
            raise ValueError(f"marginalisation block: unreadable rows ({e})") from e
        weights = np.asarray(data.get("weights"), dtype=float)
        if rows.ndim != 2 or rows.shape[1] != len(fields) or rows.shape[0] != len(weights):
            raise ValueError("marginalisation block: rows and weights do not match the fields")
        if np.isnan(rows).any() or (weights <= 0).any():
            raise ValueError("marginalisation block: a missing value or a non-positive weight")
        return cls(fields, conditions, rows, weights)

    def predict(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        matrix: np.ndarray,
        counts: np.ndarray | None = None,
    ) -> np.ndarray:
        """Probabilities for ``matrix`` rows, unrecorded fields averaged (see the module doc)."""
        matrix = np.asarray(matrix, dtype=np.float32)
        out = np.empty(len(matrix))
        columns = [FEATURES.index(f) for f in self.fields]
        missing = np.isnan(matrix[:, columns])
        plain = ~missing.any(axis=1)
        if plain.any():
            out[plain] = predict(matrix[plain])
        todo = np.flatnonzero(~plain)
        if len(todo) == 0:
            return out
        given = np.full(len(matrix), np.nan) if counts is None else np.asarray(counts, float)
        # identical rows (coarse registers repeat them) are scored once
        keys = np.nan_to_num(np.column_stack([matrix[todo], given[todo]]), nan=-1e9)
        unique, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        del unique
        values = np.empty(len(first))
        per_batch = max(1, _BATCH_ROWS // len(self.rows))
        for start in range(0, len(first), per_batch):
            rows = todo[first[start : start + per_batch]]
            values[start : start + len(rows)] = self._average(predict, matrix[rows], given[rows])
        out[todo] = values[inverse.ravel()]
        return out

    def weights_for(self, row: np.ndarray, count: float) -> np.ndarray:
        """Weight of each reference patient for one row (age kernel, count match)."""
        weights = self.weights.copy()
        names = self.fields
        age = float(row[FEATURES.index("age_years")])
        if "age_years" in names and not math.isnan(age):
            gap = (self.rows[:, names.index("age_years")] - age) / AGE_BANDWIDTH_YEARS
            kernel = np.exp(-0.5 * gap**2)
            if float((weights * kernel).sum()) >= MIN_WEIGHT:
                weights = weights * kernel
        conditions = [FEATURES.index(f) for f in self.conditions]
        if self.conditions and not math.isnan(count) and np.isnan(row[conditions]).all():
            have = self.rows[:, [names.index(f) for f in self.conditions]].sum(axis=1)
            match = np.minimum(have, COUNT_CAP) == min(round(count), COUNT_CAP)
            if float((weights * match).sum()) > 0:
                weights = weights * match
        return weights / weights.sum()

    def filled(self, row: np.ndarray) -> np.ndarray:
        """Copies of ``row``, one per reference patient, its unrecorded fields filled in."""
        copies = np.repeat(row[None, :], len(self.rows), axis=0)
        for j, name in enumerate(self.fields):
            column = FEATURES.index(name)
            if math.isnan(row[column]):
                copies[:, column] = self.rows[:, j]
        return copies

    def _average(
        self, predict: Callable[[np.ndarray], np.ndarray], rows: np.ndarray, counts: np.ndarray
    ) -> np.ndarray:
        k = len(self.rows)
        stacked = np.repeat(rows, k, axis=0)
        for j, name in enumerate(self.fields):
            column = FEATURES.index(name)
            fill = np.repeat(np.isnan(rows[:, column]), k)
            stacked[fill, column] = np.tile(self.rows[:, j], len(rows))[fill]
        probs = predict(stacked).reshape(len(rows), k)
        weights = np.stack([self.weights_for(r, c) for r, c in zip(rows, counts, strict=True)])
        return np.asarray((probs * weights).sum(axis=1), dtype=float)


def _compact(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{float(value):.4g}"
