"""Alert policy levels, escalation decisions, completeness in words, deterministic ids."""

from __future__ import annotations

import uuid

import pytest

from triage.alerts.policy import (
    AlertKindValues,
    AlertPolicy,
    RiskLevelValues,
    alert_id,
    completeness_note,
    decide_alert,
    levels_from_threshold,
    risk_id,
)
from triage.exceptions import ConfigRejected, ConfigRejectionReason
from triage.fhir.features import FEATURES, IMAGING_FEATURES, OBSERVATION_FEATURES

pytestmark = pytest.mark.unit

LEVELS = {"moderate": 0.2, "high": 0.4, "critical": 0.7}


def test_named_levels_label_and_alert() -> None:
    policy = AlertPolicy(LEVELS, "t1")
    assert policy.level(0.0) is RiskLevelValues.LOW
    assert policy.level(0.19) is RiskLevelValues.LOW
    assert policy.level(0.2) is RiskLevelValues.MODERATE
    assert policy.level(0.4) is RiskLevelValues.HIGH
    assert policy.level(0.69) == "high"
    assert policy.level(0.7) is RiskLevelValues.CRITICAL
    assert policy.level(1.0) == "critical"
    assert policy.threshold == 0.4  # alerts from high by default
    assert not policy.should_alert(0.39)
    assert policy.should_alert(0.4) and policy.should_alert(0.9)


def test_alerting_can_start_at_moderate() -> None:
    policy = AlertPolicy(LEVELS, "t2", alert_from=RiskLevelValues.MODERATE)
    assert policy.should_alert(0.25)
    assert policy.threshold == 0.2


def test_single_threshold_policy_keeps_its_meaning() -> None:
    """Records before named levels: the threshold is ``high``, moderate half of it."""
    policy = AlertPolicy.single(0.5, "t1")
    assert policy.level(0.25) is RiskLevelValues.MODERATE
    assert policy.level(0.5) is RiskLevelValues.HIGH
    assert policy.level(0.75) is RiskLevelValues.CRITICAL
    assert policy.should_alert(0.5) and not policy.should_alert(0.49)
    assert levels_from_threshold(0.5)[RiskLevelValues.CRITICAL] == 0.75


def test_policy_round_trips_and_reads_old_records() -> None:
    policy = AlertPolicy(LEVELS, "t9", alert_from=RiskLevelValues.CRITICAL)
    assert AlertPolicy.from_dict(policy.to_dict()) == policy
    old = {"hospital": "h", "threshold": 0.4, "threshold_version": "t3"}
    assert AlertPolicy.from_dict(old) == AlertPolicy.single(0.4, "t3")


@pytest.mark.parametrize(
    ("levels", "extra", "reason"),
    [
        ({**LEVELS, "high": 1.2}, {}, ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE),
        ({**LEVELS, "moderate": -0.1}, {}, ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE),
        ({**LEVELS, "high": float("nan")}, {}, ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE),
        ({**LEVELS, "high": "x"}, {}, ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE),
        ({**LEVELS, "high": 0.8}, {}, ConfigRejectionReason.LEVELS_NOT_ORDERED),
        ({**LEVELS, "high": 0.2}, {}, ConfigRejectionReason.LEVELS_NOT_ORDERED),  # ties too
        ({"moderate": 0.1, "high": 0.2}, {}, ConfigRejectionReason.MISSING_LEVEL),
        ({**LEVELS, "severe": 0.9}, {}, ConfigRejectionReason.UNKNOWN_LEVEL),
        ({**LEVELS, "low": 0.0}, {}, ConfigRejectionReason.UNKNOWN_LEVEL),
        (LEVELS, {"alert_from": "low"}, ConfigRejectionReason.UNKNOWN_LEVEL),
        (LEVELS, {"alert_from": "urgent"}, ConfigRejectionReason.UNKNOWN_LEVEL),
        (LEVELS, {"threshold_version": ""}, ConfigRejectionReason.EMPTY_VERSION),
        (
            {"moderate": 0.0, "high": 0.4, "critical": 0.7},
            {"alert_from": "moderate"},
            ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE,  # every study would alert
        ),
    ],
)
def test_invalid_policies_rejected(
    levels: dict[str, object], extra: dict[str, str], reason: ConfigRejectionReason
) -> None:
    data: dict[str, object] = {"levels": levels, "threshold_version": "t1", **extra}
    with pytest.raises(ConfigRejected) as info:
        AlertPolicy.from_dict(data)
    assert info.value.reason is reason


def test_old_records_out_of_range_or_empty_are_rejected() -> None:
    with pytest.raises(ConfigRejected) as info:
        AlertPolicy.from_dict({"threshold": 0.0, "threshold_version": "t1"})
    assert info.value.reason is ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE
    with pytest.raises(ConfigRejected) as info:
        AlertPolicy.from_dict({"threshold_version": "t1"})
    assert info.value.reason is ConfigRejectionReason.MISSING_LEVEL


def test_probability_out_of_range_rejected() -> None:
    with pytest.raises(ConfigRejected) as info:
        AlertPolicy.single(0.5, "t1").level(float("nan"))
    assert info.value.reason is ConfigRejectionReason.PROBABILITY_OUT_OF_RANGE


def test_first_alert_then_one_escalation_per_higher_level() -> None:
    def decide(level: str, already: dict[str, str] | None):
        alerting = level in ("high", "critical")
        return decide_alert("1.2.3", "m1", "t1", level, alerting, already)

    assert decide("moderate", None) is None  # below the alerting level
    first = decide("high", None)
    assert first is not None and first.kind is AlertKindValues.INITIAL
    assert first.alert_id == alert_id("1.2.3", "m1", "t1")
    seen = {"level": "high", "alert_id": first.alert_id}
    assert decide("high", seen) is None  # a replay or an unchanged re-score
    assert decide("moderate", seen) is None  # no de-escalation alert
    up = decide("critical", seen)
    assert up is not None and up.kind is AlertKindValues.ESCALATION
    assert up.previous_level is RiskLevelValues.HIGH and up.previous_alert_id == first.alert_id
    assert up.alert_id == alert_id("1.2.3", "m1", "t1", escalation_level="critical")
    assert up.alert_id != first.alert_id
    assert decide("critical", {"level": "critical", "alert_id": up.alert_id}) is None
    # a study whose first score is already critical raises one alert, at critical
    direct = decide("critical", None)
    assert direct is not None and direct.kind is AlertKindValues.INITIAL
    assert direct.level is RiskLevelValues.CRITICAL


def test_records_written_before_escalation_count_as_the_alerting_level() -> None:
    old = {"raised_at": 1.0}  # what alerted_studies held before named levels
    assert decide_alert("1.2.3", "m1", "t1", "high", True, old) is None
    up = decide_alert("1.2.3", "m1", "t1", "critical", True, old)
    assert up is not None and up.previous_level is RiskLevelValues.HIGH


def test_completeness_in_a_physicians_words() -> None:
    nothing: dict[str, float | None] = dict.fromkeys(FEATURES)
    imaging = {**nothing, **dict.fromkeys(IMAGING_FEATURES, 5.0)}
    assert completeness_note(nothing, 72).startswith("imaging biomarkers missing")
    assert completeness_note(imaging, 72).startswith("no clinical record yet")
    with_age = {**imaging, "age_years": 70.0}
    assert completeness_note(with_age, 24) == (
        "no vitals and no labs yet (none in the 24 h before the CT)"
    )
    spo2 = OBSERVATION_FEATURES[next(k for k in OBSERVATION_FEATURES if k.value == "spo2")]
    crp = OBSERVATION_FEATURES[next(k for k in OBSERVATION_FEATURES if k.value == "crp")]
    assert completeness_note({**with_age, spo2: 91.0}, 72) == (
        "no labs yet (none in the 72 h before the CT)"
    )
    assert completeness_note({**with_age, crp: 40.0}, 24) == "no vitals in the 24 h before the CT"
    partial = completeness_note({**with_age, spo2: 91.0, crp: 40.0}, 72)
    assert partial.startswith("no ") and "D-dimer" in partial and "SpO2" not in partial
    full = {name: 1.0 for name in FEATURES}
    assert completeness_note(full, 72) == "complete"


def test_ids_are_deterministic_and_distinct() -> None:
    a = alert_id("1.2.3", "abc123", "t1")
    assert a == alert_id("1.2.3", "abc123", "t1")
    assert uuid.UUID(a).version == 5
    assert a != alert_id("1.2.3", "abc123", "t2")
    assert a != alert_id("1.2.3", "def456", "t1")
    assert a != alert_id("1.2.4", "abc123", "t1")
    assert a != alert_id("1.2.3", "abc123", "t1", escalation_level="critical")
    assert alert_id("1.2.3", "abc123", "t1", escalation_level="critical") != alert_id(
        "1.2.3", "abc123", "t1", escalation_level="high"
    )
    assert risk_id("1.2.3", "abc123") == risk_id("1.2.3", "abc123")
    assert risk_id("1.2.3", "abc123") != risk_id("1.2.3", "def456")
    assert risk_id("1.2.3", "abc123") != a
