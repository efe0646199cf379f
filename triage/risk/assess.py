"""One study's risk decision: imaging findings + clinical context + model + policy -> outcome.

The pure core of the risk agent (``streams/agents/risk.py``), shaped like
:mod:`triage.alerts.thresholds`: the agent parses a ``ct.quantification`` record, calls
:func:`score_study` once and emits what it returns; the clinical agent calls :func:`rescore`
once when late clinical data changes a patient's context. Nothing here knows Kafka.

- features: the study's biomarkers with the clinical context as of the CT time
  (:func:`study_features`); their digest tells whether late data changed what the model sees;
- risk: probability, level and alerting flag under the hospital's policy, the features that
  moved the score, and what the model did not know (:class:`StudyRisk`);
- alert: the study's first alert, or an escalation when a later score reaches a higher level,
  given what was already raised for the study (``alerted``: first alert id -> memo; see
  :func:`triage.alerts.policy.decide_alert`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from triage.alerts.policy import (
    AlertDecision,
    AlertPolicy,
    RiskLevelValues,
    alert_id,
    completeness_note,
    decide_alert,
    risk_id,
)
from triage.fhir.context import ClinicalContext
from triage.fhir.features import (
    CompletenessValues,
    clinical_features,
    completeness,
    feature_vector,
)
from triage.risk.model import Contribution, RiskModel


@dataclass(frozen=True)
class StudyFindings:
    """What the lesion model measured on one CT study: the imaging half of the features."""

    study_uid: str
    patient_pseudonym: str
    hospital: str
    ct_time: str  # ISO 8601, the clinical clock
    biomarkers: Mapping[str, float]
    regional: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyRisk:
    """The risk of one study under one model and one policy version."""

    risk_id: str
    probability: float
    level: RiskLevelValues
    alert: bool
    model_version: str
    threshold_version: str
    threshold: float
    top_features: tuple[Contribution, ...]
    completeness: CompletenessValues
    completeness_note: str
    features_digest: str


@dataclass(frozen=True)
class StudyOutcome:
    """A scored study: its risk and the alert it raises (None: nothing new to raise).

    ``alert_key`` is where the study's alerts are remembered (its first alert's id);
    ``level_threshold`` is the probability at which the alert's level starts.
    """

    risk: StudyRisk
    alert: AlertDecision | None
    alert_key: str
    level_threshold: float | None = None

    def alert_memo(self, raised_at: float) -> dict[str, Any] | None:
        """What to remember under ``alert_key`` once the alert is sent (None: no alert)."""
        if self.alert is None:
            return None
        return {"level": str(self.alert.level), "alert_id": self.alert.alert_id,
                "raised_at": raised_at}  # fmt: skip


@dataclass(frozen=True)
class RecentStudy:
    """A study scored earlier, kept for re-scoring: its findings, digest and revision."""

    findings: StudyFindings
    features_digest: str
    revision: int


def study_features(
    findings: StudyFindings, context: ClinicalContext | None, window_h: float
) -> dict[str, float | None]:
    """The model's feature vector of one study: biomarkers + the clinical context at CT time."""
    ct_time = datetime.fromisoformat(findings.ct_time)
    clinical = clinical_features(context, ct_time, window_h) if context else {}
    return feature_vector(findings.biomarkers, clinical)


def features_digest(features: Mapping[str, float | None]) -> str:
    """A short stable digest of a feature vector (did late data change what the model sees?)."""
    return hashlib.sha256(json.dumps(dict(features), sort_keys=True).encode()).hexdigest()[:16]


def assess(
    findings: StudyFindings,
    context: ClinicalContext | None,
    model: RiskModel,
    policy: AlertPolicy,
    window_h: float,
) -> StudyRisk:
    """Score one study against its patient's clinical context under ``policy``."""
    features = study_features(findings, context, window_h)
    score = model.score(features)
    probability = float(score.probability)
    return StudyRisk(
        risk_id=risk_id(findings.study_uid, model.version),
        probability=probability,
        level=policy.level(probability),
        alert=policy.should_alert(probability),
        model_version=model.version,
        threshold_version=policy.threshold_version,
        threshold=policy.threshold,
        top_features=tuple(score.top_features),
        completeness=completeness(features),
        completeness_note=completeness_note(features, window_h),
        features_digest=features_digest(features),
    )


def alert_for(
    study_uid: str, risk: StudyRisk, policy: AlertPolicy, alerted: Mapping[str, Any]
) -> StudyOutcome:
    """The alert a risk raises given what ``alerted`` remembers for the study (pure)."""
    key = alert_id(study_uid, risk.model_version, risk.threshold_version)
    decision = decide_alert(
        study_uid,
        risk.model_version,
        risk.threshold_version,
        risk.level,
        risk.alert,
        alerted.get(key),
        alert_from=policy.alert_from,
    )
    level_threshold = policy.levels.get(decision.level) if decision is not None else None
    return StudyOutcome(risk, decision, key, level_threshold)


def score_study(
    findings: StudyFindings,
    context: ClinicalContext | None,
    model: RiskModel,
    policy: AlertPolicy,
    window_h: float,
    alerted: Mapping[str, Any],
) -> StudyOutcome:
    """Score one quantified study and decide its alert: the risk agent's one call."""
    risk = assess(findings, context, model, policy, window_h)
    return alert_for(findings.study_uid, risk, policy, alerted)


def rescore(
    recent: Sequence[RecentStudy],
    context: ClinicalContext | None,
    model_for: Callable[[str], RiskModel],
    policy_for: Callable[[str], AlertPolicy],
    window_h: float,
    alerted: Mapping[str, Any],
    arrived: str,
    horizon_h: float,
) -> list[tuple[RecentStudy, StudyOutcome]]:
    """Score again the recent studies whose model features late data changed.

    Only studies with a CT within ``horizon_h`` before ``arrived`` (ISO 8601) count, and only
    when their feature digest differs from the one they were scored with, so a redelivered
    resource re-scores nothing. ``model_for`` / ``policy_for``: the risk model (a hospital's
    site calibration) and the policy in force for a hospital. Returns
    each re-scored study with its new outcome (the caller sends it as revision + 1).
    """
    horizon = timedelta(hours=horizon_h)
    arrived_at = datetime.fromisoformat(arrived)
    out = []
    for study in recent:
        findings = study.findings
        if arrived_at - datetime.fromisoformat(findings.ct_time) > horizon:
            continue
        features = study_features(findings, context, window_h)
        if features_digest(features) == study.features_digest:
            continue
        model, policy = model_for(findings.hospital), policy_for(findings.hospital)
        out.append((study, score_study(findings, context, model, policy, window_h, alerted)))
    return out
