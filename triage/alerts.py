"""Alert policy (thresholds an administrator tunes) and deterministic ids for risks and alerts.

Ids are UUID5 over ``study_uid`` + ``model_version`` (+ ``threshold_version`` for alerts), so a
study re-scored after an at-least-once redelivery upserts the same row instead of duplicating it,
while a new model or a new threshold yields a new alert.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from triage.exceptions import ConfigRejected, ConfigRejectionReason

CTRIAGE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://ctriage.invalid/ids")


class RiskLevelValues(StrEnum):
    """Risk levels shown to clinicians (closed list)."""

    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"


@dataclass(frozen=True)
class AlertPolicy:
    """When to alert, and how to label a probability.

    ``threshold``: alert when ``p >= threshold``. ``levels``: ``(moderate_from, high_from)``;
    by default ``(threshold / 2, threshold)`` so that "high" means "alerted".
    """

    threshold: float
    threshold_version: str
    levels: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.threshold_version:
            raise ConfigRejected(ConfigRejectionReason.EMPTY_VERSION, "threshold_version is empty")
        if not (0.0 < self.threshold <= 1.0):  # also True for NaN
            raise ConfigRejected(
                ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE,
                f"threshold {self.threshold} not in (0, 1]",
            )
        moderate, high = self.bounds
        if not (0.0 <= moderate <= high <= 1.0):
            raise ConfigRejected(
                ConfigRejectionReason.LEVELS_NOT_ORDERED,
                f"levels must satisfy 0 <= moderate ({moderate}) <= high ({high}) <= 1",
            )

    @property
    def bounds(self) -> tuple[float, float]:
        """Return ``(moderate_from, high_from)``."""
        if self.levels is None:
            return (self.threshold / 2.0, self.threshold)
        return (float(self.levels[0]), float(self.levels[1]))

    def level(self, probability: float) -> RiskLevelValues:
        """Return the level of a probability: low, moderate or high."""
        _check_probability(probability)
        moderate, high = self.bounds
        if probability >= high:
            return RiskLevelValues.HIGH
        if probability >= moderate:
            return RiskLevelValues.MODERATE
        return RiskLevelValues.LOW

    def should_alert(self, probability: float) -> bool:
        """Return True when the probability reaches the alert threshold."""
        _check_probability(probability)
        return probability >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict (for the compacted ``triage.config`` topic)."""
        moderate, high = self.bounds
        return {
            "threshold": self.threshold,
            "threshold_version": self.threshold_version,
            "levels": [moderate, high],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertPolicy:
        """Build a policy from :meth:`to_dict` output; raises :class:`ConfigRejected` if invalid."""
        try:
            levels = data.get("levels")
            return cls(
                threshold=float(data["threshold"]),
                threshold_version=str(data["threshold_version"]),
                levels=(float(levels[0]), float(levels[1])) if levels is not None else None,
            )
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ConfigRejected(
                ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE, f"malformed policy {data!r}: {e}"
            ) from e


def alert_id(study_uid: str, model_version: str, threshold_version: str) -> str:
    """Return the deterministic alert id of a study scored by a model under a threshold version."""
    return str(
        uuid.uuid5(CTRIAGE_NAMESPACE, f"alert|{study_uid}|{model_version}|{threshold_version}")
    )


def risk_id(study_uid: str, model_version: str) -> str:
    """Return the deterministic id of a study's risk score from one model version."""
    return str(uuid.uuid5(CTRIAGE_NAMESPACE, f"risk|{study_uid}|{model_version}"))


def _check_probability(probability: float) -> None:
    if not (0.0 <= probability <= 1.0):  # also False for NaN
        raise ConfigRejected(
            ConfigRejectionReason.PROBABILITY_OUT_OF_RANGE,
            f"probability {probability} not in [0, 1]",
        )
