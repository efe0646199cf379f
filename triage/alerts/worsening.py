"""The worsening rule: lung burden rising by a set amount within a set interval.

A rule on measured change between a patient's CT studies, not an input to the risk model (no
reachable data links serial CT to outcomes). It fires for any patient, including those whose
first CT was mild (the "secondary worsening" the clinicians ask to catch), and says so.

Defaults (reasoning in ``docs/longitudinal.md``): +10 percentage points of lung involved, +5 CT
severity score points (of 30), or -10 percentage points of well-aerated lung (-950..-700 HU,
measured by density alone, so it still sees a rise that the lesion model under-reads, such as
consolidation), within 7 days. A fall of aerated lung does not count when the lung itself
shrank by more than 15 % (a shallower breath lowers aeration without disease). The rule's
version names its values, so every worsening alert says which thresholds raised it, as
threshold versions do for risk alerts.
A hospital's rule is part of its audited alert policy (:class:`~triage.alerts.AlertPolicy`
``worsening``); without one the worker's configured rule applies.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from triage.alerts.ids import CTRIAGE_NAMESPACE

if TYPE_CHECKING:  # the timeline passes its changes in; no runtime cycle
    from triage.timeline import Change


class WorseningReasonValues(StrEnum):
    """Why a study counts as worsening (closed list)."""

    LESION_RISE = "lesion_rise"
    SEVERITY_RISE = "severity_rise"
    AERATED_FALL = "aerated_fall"


@dataclass(frozen=True)
class WorseningRule:
    """Thresholds of the rule (percentage points, score points, days)."""

    lesion_rise_points: float = 10.0
    severity_rise_points: float = 5.0
    within_days: float = 7.0
    aerated_fall_points: float = 10.0
    #: a first CT under this lesion % is "mild": worsening after it is secondary worsening
    mild_first_percent: float = 10.0
    #: a fall of aerated lung counts only when the lung kept this share of its earlier volume
    min_lung_volume_ratio: float = 0.85

    def __post_init__(self) -> None:
        if min(getattr(self, name) for name in WORSENING_SETTINGS) <= 0:
            raise ValueError(f"worsening thresholds must be positive: {self}")

    def to_dict(self) -> dict[str, float]:
        """The thresholds an administrator sets (the shape of ``triage.config``'s ``worsening``)."""
        return {name: float(getattr(self, name)) for name in WORSENING_SETTINGS}

    @property
    def version(self) -> str:
        """Names the thresholds, e.g. ``worsening-10pp-5cts-10wal-7d``."""
        return (
            f"worsening-{self.lesion_rise_points:g}pp-{self.severity_rise_points:g}cts-"
            f"{self.aerated_fall_points:g}wal-{self.within_days:g}d"
        )


#: what an administrator may set of the rule (``mild_first_percent`` and
#: ``min_lung_volume_ratio`` are definitions, not dials)
WORSENING_SETTINGS = (
    "lesion_rise_points",
    "severity_rise_points",
    "aerated_fall_points",
    "within_days",
)
DEFAULT_RULE = WorseningRule()


@dataclass(frozen=True)
class WorseningDecision:
    """A study that worsened: from which earlier study, why, and the alert's id."""

    alert_id: str
    reasons: tuple[WorseningReasonValues, ...]
    change: Change
    rule_version: str
    secondary: bool  # the patient's first CT was mild


def worsening_alert_id(study_uid: str, rule_version: str) -> str:
    """Deterministic id of a study's worsening alert under one rule version."""
    return str(uuid.uuid5(CTRIAGE_NAMESPACE, f"worsening|{study_uid}|{rule_version}"))


def assess_worsening(
    study_uid: str, changes: Sequence[Change], rule: WorseningRule = DEFAULT_RULE
) -> WorseningDecision | None:
    """Apply ``rule`` to the changes from each earlier study (oldest first) to ``study_uid``.

    The rise is measured from the least-affected earlier study within ``rule.within_days``
    (several small steps add up); studies at the same time or later do not count.
    """
    recent = [c for c in changes if 0 < c.interval_days <= rule.within_days]
    if not recent:
        return None
    by_lesion = max(recent, key=lambda c: c.lesion_points)
    scored = [c for c in recent if c.severity_points is not None]
    by_severity = max(scored, key=lambda c: c.severity_points or 0.0) if scored else None
    falls = [(fall, c) for c in recent if (fall := _aerated_fall(c, rule)) is not None]
    largest_fall, by_aeration = max(falls, key=lambda fc: fc[0]) if falls else (None, None)
    fired: list[tuple[WorseningReasonValues, Change]] = []
    if by_lesion.lesion_points >= rule.lesion_rise_points:
        fired.append((WorseningReasonValues.LESION_RISE, by_lesion))
    severity_rise = by_severity.severity_points if by_severity is not None else None
    if by_severity is not None and (severity_rise or 0.0) >= rule.severity_rise_points:
        fired.append((WorseningReasonValues.SEVERITY_RISE, by_severity))
    if by_aeration is not None and (largest_fall or 0.0) >= rule.aerated_fall_points:
        fired.append((WorseningReasonValues.AERATED_FALL, by_aeration))
    if not fired:
        return None
    return WorseningDecision(
        alert_id=worsening_alert_id(study_uid, rule.version),
        reasons=tuple(reason for reason, _ in fired),
        change=fired[0][1],  # the first criterion that fired, in the order above
        rule_version=rule.version,
        secondary=changes[0].lesion_from_percent < rule.mild_first_percent,
    )


def _aerated_fall(change: Change, rule: WorseningRule) -> float | None:
    """Points of well-aerated lung lost (None: unmeasured, or the lung shrank too much)."""
    if change.aerated_points is None:
        return None
    ratio = change.lung_volume_ratio
    if ratio is not None and ratio < rule.min_lung_volume_ratio:
        return None  # a shallower breath: aeration falls without disease
    return -change.aerated_points
