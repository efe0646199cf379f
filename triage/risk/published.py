"""Weights a model never learned, taken from a published score: labs and vitals for death.

The Mexico file the risk models are trained on has no labs or vitals, and every cohort here
that has them is an external test, so the models carry no weight for them. The ISARIC 4C
Mortality Score (Knight et al., BMJ 2020;370:m3339, Table 2; derived on 35,463 UK patients
admitted with COVID-19, validated at AUC 0.77) gives points for three fields the models take:

- respiratory rate 20-29 /min +1, >= 30 +2;
- SpO2 on room air < 92 % +2;
- CRP 50-99 mg/L +1, >= 100 +2.

(Urea and the Glasgow coma scale are not model inputs; age, sex and comorbidities are already
learned.) The points are log-odds on one scale: **0.287 log-odds per point**, the least-squares
slope of the logit of the paper's four risk groups' in-hospital death (0-3: 1.2 %, 4-8: 9.9 %,
9-14: 31.4 %, >= 15: 61.5 %) on their midpoints (1.5, 6, 11.5, 18). Nothing is fitted on any data.

A death model whose card has a ``published_points`` block adds ``0.287 x points`` of each
*recorded* field to the logit of its calibrated probability, before any site layer; an
unrecorded field adds nothing and is never an explanation. The rule and its one measurement
(Tongji death) are in docs/risk-validation.md.

``python -m triage.risk.published MODEL.ubj ...`` writes the block into existing death models'
cards (their version changes: the block is part of it); training writes it for new ones.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from triage.fhir.features import FEATURES

SOURCE = "ISARIC 4C Mortality Score, Knight et al., BMJ 2020;370:m3339, Table 2"
LOG_ODDS_PER_POINT = 0.287
#: field -> rule -> [[threshold, points], ...]; "at_least": value >= threshold, "below": <
FOUR_C_POINTS: dict[str, dict[str, list[list[float]]]] = {
    "respiratory_rate_per_min": {"at_least": [[20.0, 1.0], [30.0, 2.0]]},
    "spo2_percent": {"below": [[92.0, 2.0]]},
    "crp_mg_per_l": {"at_least": [[50.0, 1.0], [100.0, 2.0]]},
}
#: the models the published score predicts (in-hospital death), by outcome name
OUTCOMES = ("death",)
_RULES = ("at_least", "below")
_EPSILON = 1e-9


@dataclass(frozen=True)
class PublishedPoints:
    """A published score's points for some fields and the log-odds one point is worth."""

    source: str
    log_odds_per_point: float
    fields: dict[str, dict[str, list[list[float]]]]

    @classmethod
    def four_c(cls) -> PublishedPoints:
        """The 4C Mortality Score's respiratory rate, SpO2 and CRP points (module docstring)."""
        return cls(SOURCE, LOG_ODDS_PER_POINT, json.loads(json.dumps(FOUR_C_POINTS)))

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the model card (part of the model's version)."""
        return {
            "source": self.source,
            "log_odds_per_point": self.log_odds_per_point,
            "fields": self.fields,
            "applies": "added to the logit of the calibrated probability, recorded fields only",
        }

    @classmethod
    def from_dict(cls, block: Mapping[str, Any]) -> PublishedPoints:
        """Parse a card's block; ValueError when a field or rule is not known."""
        fields = block.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise ValueError("published_points has no 'fields' map")
        for name, rules in fields.items():
            if name not in FEATURES:
                raise ValueError(f"published_points: {name!r} is not a model feature")
            if not isinstance(rules, dict) or not set(rules) <= set(_RULES) or not rules:
                raise ValueError(f"published_points: {name!r} needs 'at_least' or 'below' rules")
            for cuts in rules.values():
                if not all(len(c) == 2 and all(math.isfinite(float(v)) for v in c) for c in cuts):
                    raise ValueError(f"published_points: {name!r} has a malformed cut {cuts}")
        per_point = float(block.get("log_odds_per_point", math.nan))
        if not math.isfinite(per_point):
            raise ValueError("published_points: log_odds_per_point is not a number")
        return cls(str(block.get("source", "")), per_point, dict(fields))

    def points(self, matrix: np.ndarray) -> np.ndarray:
        """(n, fields) points of each row; 0 where the field is not recorded."""
        matrix = np.atleast_2d(np.asarray(matrix, dtype=float))
        out = np.zeros((len(matrix), len(self.fields)))
        for j, (name, rules) in enumerate(self.fields.items()):
            values = matrix[:, FEATURES.index(name)]
            for threshold, points in rules.get("at_least", []):
                out[:, j] = np.where(values >= threshold, np.maximum(out[:, j], points), out[:, j])
            for threshold, points in rules.get("below", []):
                out[:, j] = np.where(values < threshold, np.maximum(out[:, j], points), out[:, j])
        return out  # NaN compares false: an unrecorded field stays 0

    def log_odds(self, matrix: np.ndarray) -> np.ndarray:
        """(n,) log-odds the recorded fields add."""
        return self.log_odds_per_point * self.points(matrix).sum(axis=1)

    def apply(self, probs: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """Probabilities with the recorded fields' log-odds added (others unchanged)."""
        probs = np.asarray(probs, dtype=float)
        added = self.log_odds(matrix)
        p = np.clip(probs, _EPSILON, 1.0 - _EPSILON)
        shifted = 1.0 / (1.0 + np.exp(-(np.log(p / (1.0 - p)) + added)))
        return np.where(added != 0.0, shifted, probs)

    def explained(self, row: np.ndarray) -> list[tuple[str, float, float]]:
        """(field, value, log-odds) of each recorded field that adds points, for explanations."""
        per_field = self.points(row)[0] * self.log_odds_per_point
        return [
            (name, float(row[FEATURES.index(name)]), float(v))
            for name, v in zip(self.fields, per_field, strict=True)
            if v != 0.0
        ]


def attach(model_path: Path) -> str:
    """Write the 4C block into an existing model's card and its new version; returns it."""
    from triage.risk.model import RiskModel, card_path, load_card, model_version

    path = Path(model_path)
    card = load_card(path)
    if card.get("site_calibration") is not None:
        raise ValueError(f"{path}: attach the published points before any site layer")
    card["published_points"] = PublishedPoints.four_c().to_dict()
    card["version"] = model_version(
        path.read_bytes(), card.get("calibration"), card.get("marginalisation"),
        card["published_points"],
    )  # fmt: skip
    card_path(path).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return RiskModel.load(path).version  # refuse to leave a card that does not load


def main() -> None:
    """Attach the 4C points to the death models named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", type=Path, nargs="+")
    for path in parser.parse_args().models:
        print(f"{path}: version {attach(path)}")


if __name__ == "__main__":
    main()
