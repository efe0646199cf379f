"""Alert policy (named levels an administrator tunes), escalation and deterministic ids.

A policy names three probability levels, ``moderate < high < critical``; a probability below
``moderate`` is ``low``. Alerts start at ``alert_from`` (``high`` unless changed): the first score
of a study at or above it raises the study's alert, a later score (late clinical data) that
reaches a higher level raises an escalation alert. Ids are UUID5:

- ``risk_id``: study UID + model version (a re-score upserts the same row);
- ``alert_id``: study UID + model version + threshold version (the study's first alert);
- an escalation's id adds the level it reached, so each level alerts at most once.

A new model or a new threshold version therefore yields a new alert, a redelivery does not.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from triage.alerts.ids import CTRIAGE_NAMESPACE
from triage.alerts.worsening import WORSENING_SETTINGS, WorseningRule
from triage.exceptions import ConfigRejected, ConfigRejectionReason
from triage.fhir.features import (
    IMAGING_FEATURES,
    OBSERVATION_FEATURES,
    CompletenessValues,
    completeness,
)


class RiskLevelValues(StrEnum):
    """Risk levels shown to clinicians, lowest first (closed list)."""

    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for low .. 3 for critical."""
        return _RANKS[self]


_RANKS = {level: i for i, level in enumerate(RiskLevelValues)}

NAMED_LEVELS: tuple[RiskLevelValues, ...] = (
    RiskLevelValues.MODERATE,
    RiskLevelValues.HIGH,
    RiskLevelValues.CRITICAL,
)
"""The levels a policy sets a probability for, lowest first (``low`` is what lies below)."""


class AlertKindValues(StrEnum):
    """Why an alert was raised (closed list)."""

    INITIAL = "initial"
    ESCALATION = "escalation"


def levels_from_threshold(threshold: float) -> dict[RiskLevelValues, float]:
    """The levels of a single-threshold policy (records before named levels).

    ``high`` is the old threshold, ``moderate`` half of it (the old default) and ``critical``
    halfway between it and 1.
    """
    return {
        RiskLevelValues.MODERATE: threshold / 2.0,
        RiskLevelValues.HIGH: threshold,
        RiskLevelValues.CRITICAL: (1.0 + threshold) / 2.0,
    }


@dataclass(frozen=True)
class AlertPolicy:
    """When to alert, and how to label a probability.

    ``levels``: the probability from which each of moderate, high and critical starts, strictly
    increasing, in [0, 1]. ``alert_from``: the lowest alerting level (its probability > 0).
    ``worsening``: the hospital's worsening rule (None: the worker's configured rule), audited
    and versioned with the levels. ``calibration``: the hospital's site calibration of the risk
    model (``ctriage risk recalibrate``; None: the model as the worker loaded it), see
    :func:`risk_calibration`; levels are probabilities *after* it, so both change together.
    """

    levels: Mapping[RiskLevelValues, float]
    threshold_version: str
    alert_from: RiskLevelValues = RiskLevelValues.HIGH
    worsening: WorseningRule | None = None
    calibration: Mapping[str, Any] | None = None
    _sorted: tuple[tuple[RiskLevelValues, float], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.threshold_version:
            raise ConfigRejected(ConfigRejectionReason.EMPTY_VERSION, "threshold_version is empty")
        levels = _parse_levels(self.levels)
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "alert_from", parse_level(self.alert_from))
        if self.alert_from not in NAMED_LEVELS:
            raise ConfigRejected(
                ConfigRejectionReason.UNKNOWN_LEVEL,
                f"alerts must start at one of {', '.join(NAMED_LEVELS)}, not {self.alert_from}",
            )
        if levels[self.alert_from] <= 0.0:
            raise ConfigRejected(
                ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE,
                f"the alerting level {self.alert_from} must be above 0 (else every study alerts)",
            )
        object.__setattr__(self, "_sorted", tuple((lv, levels[lv]) for lv in NAMED_LEVELS))
        object.__setattr__(self, "calibration", risk_calibration(self.calibration))

    @classmethod
    def single(cls, threshold: float, threshold_version: str) -> AlertPolicy:
        """A policy from one alert threshold (see :func:`levels_from_threshold`)."""
        if not (0.0 < threshold <= 1.0):  # also True for NaN
            raise ConfigRejected(
                ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE, f"threshold {threshold} not in (0, 1]"
            )
        return cls(levels_from_threshold(threshold), threshold_version)

    @property
    def threshold(self) -> float:
        """The probability from which a study alerts (the ``alert_from`` level's)."""
        return self.levels[self.alert_from]

    def level(self, probability: float) -> RiskLevelValues:
        """Return the level of a probability: low, moderate, high or critical."""
        _check_probability(probability)
        reached = RiskLevelValues.LOW
        for level, start in self._sorted:
            if probability >= start:
                reached = level
        return reached

    def should_alert(self, probability: float) -> bool:
        """Return True when the probability reaches the alerting level."""
        return self.level(probability).rank >= self.alert_from.rank

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict (the shape of ``triage.config`` records)."""
        data: dict[str, Any] = {
            "levels": {str(level): value for level, value in self._sorted},
            "alert_from": str(self.alert_from),
            "threshold_version": self.threshold_version,
        }
        if self.worsening is not None:
            data["worsening"] = self.worsening.to_dict()
        if self.calibration is not None:
            data["calibration"] = dict(self.calibration)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertPolicy:
        """Build a policy from :meth:`to_dict` output or an old single-threshold record.

        Raises :class:`ConfigRejected` with the reason of the first problem found.
        """
        version = str(data.get("threshold_version") or "")
        levels = data.get("levels")
        if levels is None:
            threshold = data.get("threshold")
            if threshold is None:
                raise ConfigRejected(
                    ConfigRejectionReason.MISSING_LEVEL, "neither levels nor threshold given"
                )
            return cls.single(_as_probability("threshold", threshold), version)
        if not isinstance(levels, Mapping):
            raise ConfigRejected(
                ConfigRejectionReason.MISSING_LEVEL, f"levels must be a mapping, not {levels!r}"
            )
        return cls(
            levels,
            version,
            parse_level(data.get("alert_from") or RiskLevelValues.HIGH),
            worsening_rule(data.get("worsening")),
            data.get("calibration"),
        )


def risk_calibration(value: Any) -> dict[str, Any] | None:
    """A policy's site calibration, checked for shape: ``{"base_version", "site_calibration"}``.

    ``base_version``: the version of the model the layer was fitted on (without ``+site.``);
    ``site_calibration``: the card block ``ctriage risk recalibrate`` writes (its ``layer``
    map). Raises ``ConfigRejected(invalid_calibration)``; whether the layer parses and fits the
    worker's model is checked where the model is (the worker and the CLI).
    """
    if value is None:
        return None
    base = value.get("base_version") if isinstance(value, Mapping) else None
    block = value.get("site_calibration") if isinstance(value, Mapping) else None
    if not isinstance(base, str) or not base or "+" in base:
        raise ConfigRejected(
            ConfigRejectionReason.INVALID_CALIBRATION,
            f"a calibration needs the base model version it was fitted on, not {base!r}",
        )
    if not isinstance(block, Mapping) or not isinstance(block.get("layer"), Mapping):
        raise ConfigRejected(
            ConfigRejectionReason.INVALID_CALIBRATION,
            "a calibration needs the site_calibration block of a recalibrated model card",
        )
    return {"base_version": base, "site_calibration": dict(block)}


def worsening_rule(
    values: Mapping[str, Any] | None, base: WorseningRule | None = None
) -> WorseningRule | None:
    """A worsening rule from set values over ``base`` (the documented defaults when None).

    ``None`` values give ``base`` (None: none set). Raises :class:`ConfigRejected`
    (``unknown_level`` for a name that is not a setting, ``threshold_out_of_range`` for a value
    that is not a positive number).
    """
    if values is None:
        return base
    if not isinstance(values, Mapping):
        raise ConfigRejected(
            ConfigRejectionReason.MISSING_LEVEL, "worsening must be a mapping of settings"
        )
    unknown = sorted(set(values) - set(WORSENING_SETTINGS))
    if unknown:
        raise ConfigRejected(
            ConfigRejectionReason.UNKNOWN_LEVEL,
            f"unknown worsening setting(s) {unknown}; set {', '.join(WORSENING_SETTINGS)}",
        )
    merged = (base or WorseningRule()).to_dict()
    try:
        merged.update({name: float(value) for name, value in values.items()})
        if not all(math.isfinite(v) for v in merged.values()):
            raise ValueError("not finite")
        return WorseningRule(**merged)
    except (TypeError, ValueError) as e:
        raise ConfigRejected(
            ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE,
            f"worsening settings must be positive numbers: {dict(values)}",
        ) from e


@dataclass(frozen=True)
class AlertDecision:
    """What to raise for one score of a study, given what was already raised for it."""

    kind: AlertKindValues
    level: RiskLevelValues
    alert_id: str
    previous_level: RiskLevelValues | None = None
    previous_alert_id: str | None = None


def decide_alert(
    study_uid: str,
    model_version: str,
    threshold_version: str,
    level: str,
    alerting: bool,
    already: Mapping[str, Any] | None,
    alert_from: str = RiskLevelValues.HIGH,
) -> AlertDecision | None:
    """Return the alert a score raises, or None (below the alerting level, or nothing new).

    ``already`` is what was recorded for ``first_alert_id(...)``: ``{"level", "alert_id"}``,
    or ``None`` when the study has not alerted under this model and threshold version. A
    record without a level (written before escalation existed) counts as ``alert_from``.
    """
    if not alerting:
        return None
    reached = parse_level(level)
    first = alert_id(study_uid, model_version, threshold_version)
    if already is None:
        return AlertDecision(AlertKindValues.INITIAL, reached, first)
    before = parse_level(already.get("level") or alert_from)
    if reached.rank <= before.rank:
        return None
    return AlertDecision(
        AlertKindValues.ESCALATION,
        reached,
        alert_id(study_uid, model_version, threshold_version, escalation_level=reached),
        previous_level=before,
        previous_alert_id=str(already.get("alert_id") or first),
    )


def completeness_note(features: Mapping[str, float | None], window_h: float) -> str:
    """What the model did not know, in words an emergency physician reads."""
    state = completeness(features)
    hours = f"{window_h:g} h"
    if state is CompletenessValues.NO_IMAGING:
        missing = [n for n in IMAGING_FEATURES if features.get(n) is None]
        return f"imaging biomarkers missing ({', '.join(missing)})"
    if state is CompletenessValues.NO_CLINICAL_RECORD:
        return "no clinical record yet: age, comorbidities, vitals and labs unknown"
    if state is CompletenessValues.NO_VITALS_OR_LABS:
        return f"no vitals and no labs yet (none in the {hours} before the CT)"
    if state is CompletenessValues.NO_LABS:
        return f"no labs yet (none in the {hours} before the CT)"
    if state is CompletenessValues.NO_VITALS:
        return f"no vitals in the {hours} before the CT"
    if state is CompletenessValues.PARTIAL:
        missing = [
            _display(key.value) for key, n in OBSERVATION_FEATURES.items() if not _has(features, n)
        ]
        if missing:
            return f"no {', '.join(missing)} in the {hours} before the CT"
        return "partial: some demographics or comorbidities unknown"
    return "complete"


def alert_id(
    study_uid: str,
    model_version: str,
    threshold_version: str,
    escalation_level: str | None = None,
) -> str:
    """Return the deterministic id of a study's alert (an escalation's names its level)."""
    name = f"alert|{study_uid}|{model_version}|{threshold_version}"
    if escalation_level is not None:
        name += f"|{parse_level(escalation_level)}"
    return str(uuid.uuid5(CTRIAGE_NAMESPACE, name))


def risk_id(study_uid: str, model_version: str) -> str:
    """Return the deterministic id of a study's risk score from one model version."""
    return str(uuid.uuid5(CTRIAGE_NAMESPACE, f"risk|{study_uid}|{model_version}"))


def _display(key: str) -> str:
    short = {"crp": "CRP", "ldh": "LDH", "spo2": "SpO2", "d_dimer": "D-dimer"}
    return short.get(key, key.replace("_", " "))


def _has(features: Mapping[str, float | None], name: str) -> bool:
    return features.get(name) is not None


def parse_level(level: Any) -> RiskLevelValues:
    """A level by name; raises ``ConfigRejected(unknown_level)`` for anything else."""
    try:
        return RiskLevelValues(level)
    except ValueError as e:
        known = ", ".join(RiskLevelValues)
        raise ConfigRejected(
            ConfigRejectionReason.UNKNOWN_LEVEL, f"unknown level {level!r} (known: {known})"
        ) from e


def _as_probability(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as e:
        raise ConfigRejected(
            ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE, f"{name} {value!r} is not a number"
        ) from e
    if isinstance(value, bool) or not (0.0 <= number <= 1.0) or math.isnan(number):
        raise ConfigRejected(
            ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE, f"{name} {value!r} not in [0, 1]"
        )
    return number


def _parse_levels(levels: Mapping[Any, Any]) -> dict[RiskLevelValues, float]:
    parsed = {parse_level(k): v for k, v in levels.items()}
    for level in parsed:
        if level not in NAMED_LEVELS:
            raise ConfigRejected(
                ConfigRejectionReason.UNKNOWN_LEVEL,
                f"{level} is what lies below moderate; it takes no probability",
            )
    missing = [str(lv) for lv in NAMED_LEVELS if lv not in parsed]
    if missing:
        raise ConfigRejected(
            ConfigRejectionReason.MISSING_LEVEL, f"levels missing: {', '.join(missing)}"
        )
    values = {lv: _as_probability(str(lv), parsed[lv]) for lv in NAMED_LEVELS}
    ordered = [values[lv] for lv in NAMED_LEVELS]
    if not all(a < b for a, b in zip(ordered, ordered[1:], strict=False)):
        shown = " < ".join(f"{lv} ({values[lv]:g})" for lv in NAMED_LEVELS)
        raise ConfigRejected(
            ConfigRejectionReason.LEVELS_NOT_ORDERED, f"levels must satisfy {shown}"
        )
    return values


def _check_probability(probability: float) -> None:
    if not (0.0 <= probability <= 1.0):  # also False for NaN
        raise ConfigRejected(
            ConfigRejectionReason.PROBABILITY_OUT_OF_RANGE,
            f"probability {probability} not in [0, 1]",
        )
