"""Threshold administration as pure functions: changes, versions, audit ids, operating points.

A change sets one or more named levels, the lowest alerting level, the worsening rule's
thresholds and/or the risk model's site calibration of one hospital's policy. It is refused
with :class:`~triage.exceptions.ConfigRejected` when a value is outside [0, 1] (worsening
settings: not positive), the levels would not be ordered ``moderate < high < critical``, the
reason or the user is empty, a calibration is malformed, or it was prepared against another
version than the one in force. A change that
alters nothing is no change (no new version, no audit record). The stream wiring publishes the
result; nothing here knows Kafka.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from triage.alerts.policy import (
    CTRIAGE_NAMESPACE,
    NAMED_LEVELS,
    AlertPolicy,
    RiskLevelValues,
    parse_level,
    worsening_rule,
)
from triage.exceptions import ConfigRejected, ConfigRejectionReason

_TRAILING_NUMBER = re.compile(r"^(.*?)(\d+)$")

#: a :class:`ThresholdChange` ``calibration`` that removes the hospital's site calibration
NO_CALIBRATION: Mapping[str, Any] = {}


@dataclass(frozen=True)
class ThresholdChange:
    """An administrator's request: new values for some levels of one hospital's policy."""

    hospital: str
    levels: Mapping[str, float]
    reason: str
    changed_by: str
    alert_from: str | None = None
    expected_version: str | None = None
    #: worsening rule settings to change (``lesion_rise_points``, ``severity_rise_points``,
    #: ``within_days``); the others keep their value in force (the documented defaults if none)
    worsening: Mapping[str, float] | None = None
    #: a site calibration to put in force (``{"base_version", "site_calibration"}``), or
    #: :data:`NO_CALIBRATION` to score with the model as loaded again; None: unchanged
    calibration: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class AppliedChange:
    """A change that produced a new policy version."""

    hospital: str
    old: AlertPolicy
    new: AlertPolicy
    reason: str
    changed_by: str

    @property
    def audit_id(self) -> str:
        """Deterministic id of this change's audit record."""
        return audit_id(self.hospital, self.old.threshold_version, self.new.threshold_version)


def next_version(version: str) -> str:
    """The version after ``version``: ``t1`` -> ``t2``, ``v-9`` -> ``v-10``, ``x`` -> ``x-2``."""
    match = _TRAILING_NUMBER.match(version)
    if match is None:
        return f"{version}-2"
    prefix, number = match.groups()
    return f"{prefix}{int(number) + 1}"


def apply_change(current: AlertPolicy, change: ThresholdChange) -> AppliedChange | None:
    """The new policy a change makes of ``current``; None when it changes nothing.

    Raises :class:`ConfigRejected` (reason codes ``empty_reason``, ``empty_user``,
    ``version_conflict``, ``unknown_level``, ``threshold_out_of_range``, ``levels_not_ordered``,
    ``missing_level``). A worsening change applies over the hospital's rule in force, or over
    the documented defaults when the policy has none yet.
    """
    if not change.reason or not change.reason.strip():
        raise ConfigRejected(ConfigRejectionReason.EMPTY_REASON, "a change needs a reason")
    if not change.changed_by or not change.changed_by.strip():
        raise ConfigRejected(ConfigRejectionReason.EMPTY_USER, "a change needs a user")
    if change.expected_version is not None and change.expected_version != (
        current.threshold_version
    ):
        raise ConfigRejected(
            ConfigRejectionReason.VERSION_CONFLICT,
            f"{change.hospital} is at {current.threshold_version}, "
            f"not {change.expected_version}: read the policy again",
        )
    if (
        not change.levels
        and change.alert_from is None
        and not change.worsening
        and change.calibration is None
    ):
        raise ConfigRejected(ConfigRejectionReason.MISSING_LEVEL, "the change sets no level")
    merged: dict[Any, Any] = {str(k): v for k, v in current.levels.items()}
    merged.update(change.levels)
    calibration = current.calibration
    if change.calibration is not None:
        calibration = change.calibration or None  # NO_CALIBRATION: back to the model as loaded
    candidate = AlertPolicy(
        merged,
        current.threshold_version,
        parse_level(change.alert_from) if change.alert_from is not None else current.alert_from,
        worsening_rule(change.worsening or None, current.worsening),
        calibration,
    )
    if candidate == current:
        return None
    new = AlertPolicy(
        candidate.levels,
        next_version(current.threshold_version),
        candidate.alert_from,
        candidate.worsening,
        candidate.calibration,
    )
    return AppliedChange(change.hospital, current, new, change.reason.strip(), change.changed_by)


def audit_id(hospital: str, old_version: str, new_version: str) -> str:
    """Deterministic id of the audit record of one version change."""
    return str(uuid.uuid5(CTRIAGE_NAMESPACE, f"audit|{hospital}|{old_version}|{new_version}"))


@dataclass(frozen=True)
class OperatingPointRow:
    """One row of the operating-point table."""

    threshold: float
    sensitivity: float | None
    specificity: float | None
    ppv: float | None
    alerts_per_100: float
    alerts_per_day: float | None
    levels: tuple[str, ...] = field(default_factory=tuple)


def operating_point_rows(
    card: Mapping[str, Any],
    studies_per_day: float | None,
    policy: AlertPolicy | None = None,
) -> list[OperatingPointRow]:
    """The card's operating points with expected alerts per day and the levels in force.

    ``alerts_per_day = alerts_per_100 / 100 * studies_per_day`` (None without a volume). A level
    in force is shown on the row whose threshold is the nearest to its probability (ties: the
    lower threshold, which alerts at least as often).
    """
    points: Sequence[Mapping[str, Any]] = card.get("operating_points") or []
    rows = [
        OperatingPointRow(
            threshold=float(p["threshold"]),
            sensitivity=_opt(p.get("sensitivity")),
            specificity=_opt(p.get("specificity")),
            ppv=_opt(p.get("ppv")),
            alerts_per_100=float(p["alerts_per_100"]),
            alerts_per_day=None
            if studies_per_day is None
            else round(float(p["alerts_per_100"]) / 100.0 * studies_per_day, 2),
        )
        for p in points
    ]
    if policy is None or not rows:
        return rows
    marks: dict[int, list[str]] = {}
    for level in NAMED_LEVELS:
        value = policy.levels[level]
        nearest = min(range(len(rows)), key=lambda i: (abs(rows[i].threshold - value), i))
        label = f"{level} {value:g}" + (" (alerts)" if level is policy.alert_from else "")
        marks.setdefault(nearest, []).append(label)
    return [
        OperatingPointRow(**{**row.__dict__, "levels": tuple(marks.get(i, ()))})
        for i, row in enumerate(rows)
    ]


def level_names() -> list[str]:
    """Names of the levels a change may set."""
    return [str(level) for level in NAMED_LEVELS]


def parse_level_name(name: str) -> RiskLevelValues:
    """A settable level by name; raises ``ConfigRejected(unknown_level)`` otherwise."""
    try:
        level = RiskLevelValues(name)
    except ValueError:
        level = RiskLevelValues.LOW
    if level not in NAMED_LEVELS:
        raise ConfigRejected(
            ConfigRejectionReason.UNKNOWN_LEVEL,
            f"unknown level {name!r}; set one of {', '.join(level_names())}",
        )
    return level


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)
