"""Threshold changes (validation, versions, no-op), operating-point rows, FHIR output."""

from __future__ import annotations

import json

import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.riskassessment import RiskAssessment
from paths import REPO_ROOT

from triage.alerts.policy import AlertPolicy, RiskLevelValues
from triage.alerts.thresholds import (
    NO_CALIBRATION,
    ThresholdChange,
    apply_change,
    audit_id,
    next_version,
    operating_point_rows,
    parse_level_name,
)
from triage.exceptions import ConfigRejected, ConfigRejectionReason
from triage.fhir.outbound import (
    RISK_PROBABILITY_SYSTEM,
    risk_assessment,
    threshold_audit_event,
)

pytestmark = pytest.mark.unit

REPO = REPO_ROOT
CURRENT = AlertPolicy({"moderate": 0.2, "high": 0.4, "critical": 0.7}, "t4")


def change(**kwargs: object) -> ThresholdChange:
    args: dict[str, object] = {
        "hospital": "h1",
        "levels": {"high": 0.5},
        "reason": "fewer false alarms in winter",
        "changed_by": "ana",
    }
    args.update(kwargs)
    return ThresholdChange(**args)  # type: ignore[arg-type]


def test_a_change_makes_a_new_version() -> None:
    applied = apply_change(CURRENT, change())
    assert applied is not None
    assert applied.old == CURRENT
    assert applied.new.threshold_version == "t5"
    assert applied.new.levels[RiskLevelValues.HIGH] == 0.5
    assert applied.new.levels[RiskLevelValues.CRITICAL] == 0.7  # untouched levels stay
    assert applied.audit_id == audit_id("h1", "t4", "t5")
    moved = apply_change(CURRENT, change(levels={}, alert_from="critical"))
    assert moved is not None and moved.new.alert_from is RiskLevelValues.CRITICAL


def test_a_change_that_changes_nothing_is_no_change() -> None:
    assert apply_change(CURRENT, change(levels={"high": 0.4})) is None


CALIBRATION = {
    "base_version": "abc123def456",
    "site_calibration": {"site": "nl", "layer": {"method": "logistic", "a": 0.3, "b": 0.9}},
}


def test_a_site_calibration_is_a_new_version_and_can_be_removed() -> None:
    applied = apply_change(CURRENT, change(levels={}, calibration=CALIBRATION))
    assert applied is not None and applied.new.threshold_version == "t5"
    assert applied.new.calibration == CALIBRATION
    assert applied.new.levels == CURRENT.levels  # the levels stay
    assert "calibration" not in applied.old.to_dict()
    assert AlertPolicy.from_dict(applied.new.to_dict()) == applied.new  # the record round trip
    assert apply_change(applied.new, change(levels={}, calibration=CALIBRATION)) is None
    kept = apply_change(applied.new, change())  # a level change keeps the calibration
    assert kept is not None and kept.new.calibration == CALIBRATION
    removed = apply_change(applied.new, change(levels={}, calibration=NO_CALIBRATION))
    assert removed is not None and removed.new.calibration is None
    assert removed.new.threshold_version == "t6"
    assert apply_change(CURRENT, change(levels={}, calibration=NO_CALIBRATION)) is None


@pytest.mark.parametrize(
    "calibration",
    [
        {"site_calibration": CALIBRATION["site_calibration"]},  # no base model
        {**CALIBRATION, "base_version": "abc+site.1234"},  # a calibrated version as the base
        {**CALIBRATION, "site_calibration": {"site": "nl"}},  # no layer
        "nl",
    ],
)
def test_a_malformed_calibration_is_refused(calibration: object) -> None:
    with pytest.raises(ConfigRejected) as caught:
        apply_change(CURRENT, change(levels={}, calibration=calibration))
    assert caught.value.reason is ConfigRejectionReason.INVALID_CALIBRATION
    with pytest.raises(ConfigRejected):
        AlertPolicy.from_dict({**CURRENT.to_dict(), "calibration": calibration})


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"levels": {"high": 1.5}}, ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE),
        ({"levels": {"high": -0.1}}, ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE),
        ({"levels": {"high": 0.8}}, ConfigRejectionReason.LEVELS_NOT_ORDERED),
        ({"levels": {"moderate": 0.4}}, ConfigRejectionReason.LEVELS_NOT_ORDERED),
        ({"levels": {"severe": 0.4}}, ConfigRejectionReason.UNKNOWN_LEVEL),
        ({"alert_from": "low"}, ConfigRejectionReason.UNKNOWN_LEVEL),
        ({"levels": {}}, ConfigRejectionReason.MISSING_LEVEL),
        ({"reason": ""}, ConfigRejectionReason.EMPTY_REASON),
        ({"reason": "   "}, ConfigRejectionReason.EMPTY_REASON),
        ({"changed_by": ""}, ConfigRejectionReason.EMPTY_USER),
        ({"expected_version": "t3"}, ConfigRejectionReason.VERSION_CONFLICT),
    ],
)
def test_refused_changes_name_their_reason(
    kwargs: dict[str, object], reason: ConfigRejectionReason
) -> None:
    with pytest.raises(ConfigRejected) as info:
        apply_change(CURRENT, change(**kwargs))
    assert info.value.reason is reason
    assert info.value.detail  # a sentence an administrator can act on


def test_expected_version_in_force_is_accepted() -> None:
    assert apply_change(CURRENT, change(expected_version="t4")) is not None


@pytest.mark.parametrize(
    ("before", "after"), [("t1", "t2"), ("t9", "t10"), ("v-41", "v-42"), ("x", "x-2")]
)
def test_next_version(before: str, after: str) -> None:
    assert next_version(before) == after


def test_level_names() -> None:
    assert parse_level_name("critical") is RiskLevelValues.CRITICAL
    with pytest.raises(ConfigRejected):
        parse_level_name("low")


CARD = {
    "operating_points": [
        {"threshold": t, "sensitivity": 1 - t, "specificity": t, "ppv": 0.5, "alerts_per_100": a}
        for t, a in ((0.2, 40.0), (0.4, 20.0), (0.6, 10.0), (0.8, 2.0))
    ]
}


def test_operating_points_with_volume_and_levels() -> None:
    rows = operating_point_rows(CARD, 50.0, CURRENT)
    assert [r.alerts_per_day for r in rows] == [20.0, 10.0, 5.0, 1.0]
    assert rows[0].levels == ("moderate 0.2",)
    assert rows[1].levels == ("high 0.4 (alerts)",)
    assert rows[2].levels == ("critical 0.7",)  # 0.7 is as near 0.6 as 0.8: the lower wins
    assert rows[3].levels == ()
    assert all(r.alerts_per_day is None for r in operating_point_rows(CARD, None))


def test_operating_points_of_the_shipped_card() -> None:
    card = json.loads((REPO / "triage" / "risk" / "models" / "ventilation.card.json").read_text())
    rows = operating_point_rows(card, 100.0)
    assert rows and all(r.alerts_per_day == r.alerts_per_100 for r in rows)


FEATURES = [
    {"feature": "lesion_percent", "value": 31.5, "contribution": 0.8, "direction": "raises"},
    {"feature": "spo2_percent", "value": None, "contribution": 0.1, "direction": "raises"},
]


def build_risk(level: str = "critical", escalated_from: str | None = "high") -> dict:
    return risk_assessment(
        alert_id="7c0c5cbb-2f8b-5a52-9d69-0e0ae5a1f0c1",
        patient_pseudonym="k1-4f2a9c",
        study_uid="1.2.826.0.1.3680043.8.498.1",
        probability=0.8123456,
        level=level,
        occurrence="2026-03-01T10:15:00+00:00",
        model_version="d0f67df135e1",
        threshold_version="t5",
        top_features=FEATURES,
        completeness="no labs yet (none in the 72 h before the CT)",
        escalated_from=escalated_from,
    )


def test_alert_as_fhir_r4_risk_assessment() -> None:
    resource = build_risk()
    RiskAssessment.model_validate(resource)  # R4 (R4B models)
    assert resource["status"] == "final"
    assert resource["subject"]["reference"] == "Patient/k1-4f2a9c"
    assert resource["occurrenceDateTime"] == "2026-03-01T10:15:00Z"  # normalised UTC
    prediction = resource["prediction"][0]
    codes = [(c["system"], c["code"]) for c in prediction["outcome"]["coding"]]
    assert ("http://snomed.info/sct", "1258985005") in codes  # invasive mechanical ventilation
    assert prediction["probabilityDecimal"] == 0.8123
    assert prediction["qualitativeRisk"]["coding"][0] == {
        "system": RISK_PROBABILITY_SYSTEM,
        "code": "high",
        "display": "High likelihood",
    }
    assert prediction["qualitativeRisk"]["text"] == "critical"
    assert "lesion_percent = 31.5 (raises risk)" in prediction["rationale"]
    assert "spo2_percent = unknown" in prediction["rationale"]
    assert resource["basis"][0]["identifier"] == {
        "system": "urn:dicom:uid",
        "value": "urn:oid:1.2.826.0.1.3680043.8.498.1",
    }
    assert resource["method"]["coding"][0]["version"] == "d0f67df135e1"
    note = resource["note"][0]["text"]
    assert "escalated from high" in note and "t5" in note and "no labs yet" in note
    moderate = build_risk("moderate", None)
    assert moderate["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "moderate"


def test_policy_change_as_fhir_r4_audit_event() -> None:
    applied = apply_change(CURRENT, change())
    assert applied is not None
    event = threshold_audit_event(
        audit_id=applied.audit_id,
        hospital="h1",
        recorded="2026-03-01T10:15:00+00:00",
        changed_by="ana",
        role="threshold-admin",
        source="admin-api",
        old_policy=applied.old.to_dict(),
        new_policy=applied.new.to_dict(),
        reason=applied.reason,
    )
    AuditEvent.model_validate(event)
    assert event["action"] == "U" and event["outcome"] == "0"
    assert event["agent"][0]["who"]["identifier"]["value"] == "ana"
    assert event["agent"][0]["requestor"] is True
    details = {d["type"]: d["valueString"] for d in event["entity"][0]["detail"]}
    assert json.loads(details["old"])["threshold_version"] == "t4"
    assert json.loads(details["new"])["levels"]["high"] == 0.5
    assert details["reason"] == "fewer false alarms in winter"
    assert event["outcomeDesc"] == "alert policy of h1: t4 -> t5"


def test_the_worsening_rule_is_an_audited_part_of_the_policy() -> None:
    applied = apply_change(CURRENT, change(levels={}, worsening={"lesion_rise_points": 8}))
    assert applied is not None and applied.new.threshold_version == "t5"
    rule = applied.new.worsening
    assert rule is not None and rule.version == "worsening-8pp-5cts-10wal-7d"  # others: defaults
    assert applied.new.levels == CURRENT.levels  # the levels stay
    stored = applied.new.to_dict()
    assert stored["worsening"] == {
        "lesion_rise_points": 8.0, "severity_rise_points": 5.0, "aerated_fall_points": 10.0,
        "within_days": 7.0,
    }  # fmt: skip
    assert AlertPolicy.from_dict(stored) == applied.new  # what triage.config carries
    assert "worsening" not in CURRENT.to_dict()  # no rule set: the worker's setting applies
    again = apply_change(applied.new, change(levels={}, worsening={"within_days": 5}))
    assert again is not None and again.new.worsening is not None
    assert again.new.worsening.version == "worsening-8pp-5cts-10wal-5d"  # over the rule in force
    same = apply_change(applied.new, change(levels={}, worsening={"lesion_rise_points": 8}))
    assert same is None


@pytest.mark.parametrize(
    ("worsening", "reason"),
    [
        ({"lesion_rise_points": 0}, ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE),
        ({"within_days": -1}, ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE),
        ({"lesion_rise_points": float("nan")}, ConfigRejectionReason.THRESHOLD_OUT_OF_RANGE),
        ({"mild_first_percent": 5}, ConfigRejectionReason.UNKNOWN_LEVEL),
    ],
)
def test_bad_worsening_settings_are_refused(worsening: dict, reason: str) -> None:
    with pytest.raises(ConfigRejected) as caught:
        apply_change(CURRENT, change(levels={}, worsening=worsening))
    assert caught.value.reason == reason
