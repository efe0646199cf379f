"""The risk agent's core: one study scored, its alert decided, late data re-scored (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from paths import RISK_MODELS

from triage.alerts.policy import AlertKindValues, AlertPolicy, RiskLevelValues, alert_id, risk_id
from triage.fhir.context import ClinicalContext
from triage.fhir.features import IMAGING_FEATURES, CompletenessValues
from triage.risk.assess import (
    RecentStudy,
    StudyFindings,
    assess,
    features_digest,
    rescore,
    score_study,
    study_features,
)
from triage.risk.model import RiskModel

pytestmark = pytest.mark.unit

CT = datetime(2020, 11, 2, 8, tzinfo=UTC)
WINDOW_H = 72.0
#: every probability the model can give is at least moderate: levels are then chosen per test
LOW_LEVELS = AlertPolicy(
    {RiskLevelValues.MODERATE: 1e-9, RiskLevelValues.HIGH: 2e-9, RiskLevelValues.CRITICAL: 3e-9},
    "t-low",
)
NEVER = AlertPolicy(  # above what the model gives these inputs: nothing alerts
    {RiskLevelValues.MODERATE: 0.99997, RiskLevelValues.HIGH: 0.99998,
     RiskLevelValues.CRITICAL: 0.99999},
    "t-never",
)  # fmt: skip


@pytest.fixture(scope="module")
def model() -> RiskModel:
    return RiskModel.load(RISK_MODELS / "ventilation.ubj")


def findings(study_uid: str = "1.2.3", hours_before: float = 0.0) -> StudyFindings:
    return StudyFindings(
        study_uid=study_uid,
        patient_pseudonym="p1",
        hospital="h1",
        ct_time=(CT - timedelta(hours=hours_before)).isoformat(),
        biomarkers=dict.fromkeys(IMAGING_FEATURES, 10.0),
    )


def patient_with_spo2(spo2: float | None) -> ClinicalContext:
    context = ClinicalContext().apply(
        {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1950"}
    )
    if spo2 is None:
        return context
    return context.apply(
        {
            "resourceType": "Observation",
            "status": "final",
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "59408-5"}]},
            "effectiveDateTime": (CT - timedelta(hours=1)).isoformat(),
            "valueQuantity": {"value": spo2, "system": "http://unitsofmeasure.org", "code": "%"},
        }
    )


def test_risk_fields_follow_the_model_and_the_policy(model: RiskModel) -> None:
    risk = assess(findings(), None, model, NEVER, WINDOW_H)
    assert risk.risk_id == risk_id("1.2.3", model.version)
    assert risk.model_version == model.version and risk.threshold_version == "t-never"
    assert 0.0 < risk.probability < 1.0 and not risk.alert
    assert risk.level is RiskLevelValues.LOW and risk.threshold == 0.99998
    assert risk.completeness is CompletenessValues.NO_CLINICAL_RECORD
    assert risk.completeness_note.startswith("no clinical record yet")
    assert risk.top_features and all(c.feature for c in risk.top_features)
    # the same inputs give the same risk: a redelivery upserts the same row
    assert assess(findings(), None, model, NEVER, WINDOW_H) == risk


def test_clinical_context_at_ct_time_enters_the_features(model: RiskModel) -> None:
    bare = study_features(findings(), None, WINDOW_H)
    known = study_features(findings(), patient_with_spo2(85.0), WINDOW_H)
    assert bare["age_years"] is None and known["age_years"] == 70.0
    assert known["spo2_percent"] == 85.0
    assert features_digest(bare) != features_digest(known)
    assert features_digest(known) == features_digest(dict(reversed(list(known.items()))))
    # an observation after the CT is not what the model knew at CT time
    later = study_features(findings(hours_before=2), patient_with_spo2(85.0), WINDOW_H)
    assert later["spo2_percent"] is None


def test_first_score_alerts_once_then_escalates_per_level(model: RiskModel) -> None:
    outcome = score_study(findings(), None, model, LOW_LEVELS, WINDOW_H, alerted={})
    assert outcome.risk.level is RiskLevelValues.CRITICAL and outcome.risk.alert
    decision = outcome.alert
    assert decision is not None and decision.kind is AlertKindValues.INITIAL
    assert outcome.alert_key == decision.alert_id == alert_id("1.2.3", model.version, "t-low")
    assert outcome.level_threshold == 3e-9
    memo = outcome.alert_memo(raised_at=5.0)
    assert memo == {"level": "critical", "alert_id": decision.alert_id, "raised_at": 5.0}

    # remembered at that level: a redelivery raises nothing new
    again = score_study(findings(), None, model, LOW_LEVELS, WINDOW_H, {outcome.alert_key: memo})
    assert again.alert is None and again.alert_memo(6.0) is None and again.risk == outcome.risk

    # remembered at a lower level: one escalation, naming the alert it escalates
    lower = {outcome.alert_key: {"level": "high", "alert_id": "first"}}
    escalated = score_study(findings(), None, model, LOW_LEVELS, WINDOW_H, lower).alert
    assert escalated is not None and escalated.kind is AlertKindValues.ESCALATION
    assert escalated.previous_level is RiskLevelValues.HIGH
    assert escalated.previous_alert_id == "first" and escalated.alert_id != decision.alert_id


def test_below_the_alerting_level_nothing_is_raised(model: RiskModel) -> None:
    outcome = score_study(findings(), None, model, NEVER, WINDOW_H, alerted={})
    assert outcome.alert is None and outcome.level_threshold is None


def _recent(model: RiskModel, hours_before: float, uid: str) -> RecentStudy:
    study = findings(uid, hours_before)
    risk = assess(study, patient_with_spo2(None), model, NEVER, WINDOW_H)
    return RecentStudy(study, risk.features_digest, revision=0)


def test_rescore_only_recent_studies_whose_features_changed(model: RiskModel) -> None:
    recent = [_recent(model, 0.0, "recent"), _recent(model, 200.0, "old")]
    policies: dict[str, Any] = {"h1": LOW_LEVELS}
    arrived = (CT + timedelta(hours=1)).isoformat()
    model_for, policy_for = {"h1": model}.__getitem__, policies.__getitem__
    unchanged = rescore(
        recent, patient_with_spo2(None), model_for, policy_for, WINDOW_H, {}, arrived, 48.0
    )
    assert unchanged == []  # same features: a redelivered resource re-scores nothing
    changed = rescore(
        recent, patient_with_spo2(85.0), model_for, policy_for, WINDOW_H, {}, arrived, 48.0
    )
    assert [study.findings.study_uid for study, _ in changed] == ["recent"]  # old: past horizon
    study, outcome = changed[0]
    assert outcome.risk.features_digest != study.features_digest
    assert outcome.risk.threshold_version == "t-low"  # the policy in force for the hospital
    assert outcome.alert is not None
