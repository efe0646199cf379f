"""Alert policy levels and deterministic ids."""

from __future__ import annotations

import uuid

import pytest

from triage.alerts import AlertPolicy, RiskLevelValues, alert_id, risk_id
from triage.exceptions import ConfigRejected, ConfigRejectionReason

pytestmark = pytest.mark.unit


def test_levels_and_alerting() -> None:
    policy = AlertPolicy(threshold=0.5, threshold_version="t1")
    assert policy.level(0.1) is RiskLevelValues.LOW
    assert policy.level(0.25) is RiskLevelValues.MODERATE
    assert policy.level(0.5) is RiskLevelValues.HIGH
    assert policy.level(1.0) == "high"
    assert not policy.should_alert(0.49)
    assert policy.should_alert(0.5)


def test_custom_levels() -> None:
    policy = AlertPolicy(threshold=0.3, threshold_version="t2", levels=(0.1, 0.6))
    assert policy.level(0.05) == "low"
    assert policy.level(0.4) == "moderate"
    assert policy.should_alert(0.4)
    assert policy.level(0.7) == "high"


def test_policy_round_trips() -> None:
    policy = AlertPolicy(threshold=0.4, threshold_version="t9", levels=(0.2, 0.4))
    assert AlertPolicy.from_dict(policy.to_dict()) == policy


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"threshold": 0.0}, ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE),
        ({"threshold": 1.2}, ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE),
        ({"threshold": float("nan")}, ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE),
        ({"threshold_version": ""}, ConfigRejectionReason.EMPTY_VERSION),
        ({"levels": (0.6, 0.4)}, ConfigRejectionReason.LEVELS_NOT_ORDERED),
    ],
)
def test_invalid_policies_rejected(
    kwargs: dict[str, object], reason: ConfigRejectionReason
) -> None:
    args: dict[str, object] = {"threshold": 0.5, "threshold_version": "t1"}
    args.update(kwargs)
    with pytest.raises(ConfigRejected) as info:
        AlertPolicy(**args)  # type: ignore[arg-type]
    assert info.value.reason is reason


def test_probability_out_of_range_rejected() -> None:
    with pytest.raises(ConfigRejected) as info:
        AlertPolicy(0.5, "t1").level(float("nan"))
    assert info.value.reason is ConfigRejectionReason.PROBABILITY_OUT_OF_RANGE


def test_ids_are_deterministic_and_distinct() -> None:
    a = alert_id("1.2.3", "abc123", "t1")
    assert a == alert_id("1.2.3", "abc123", "t1")
    assert uuid.UUID(a).version == 5
    assert a != alert_id("1.2.3", "abc123", "t2")
    assert a != alert_id("1.2.3", "def456", "t1")
    assert a != alert_id("1.2.4", "abc123", "t1")
    assert risk_id("1.2.3", "abc123") == risk_id("1.2.3", "abc123")
    assert risk_id("1.2.3", "abc123") != risk_id("1.2.3", "def456")
    assert risk_id("1.2.3", "abc123") != a
