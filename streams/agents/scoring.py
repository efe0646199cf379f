"""The scoring shell shared by the risk agent and the clinical agent's re-scores (no agent here).

Both call the risk core (:mod:`triage.risk.assess`) once and send what it returns the same way:
the ``triage.risk`` record, and the alert it raises to ``triage.alerts`` and, as a FHIR R4
RiskAssessment, to ``triage.alerts.fhir``. ``alerted_studies`` remembers each study's highest
alert across restarts and replays; ``patient_to_recent_studies`` keeps each patient's recently
scored studies (the newest :data:`MAX_RECENT_STUDIES`) for re-scoring after late clinical data.
"""

from __future__ import annotations

import time
from typing import Any

from streams import topics as t
from streams.agents.alert_log import send_alert_once, settle_pending_alerts
from streams.agents.base import send_confirmed
from streams.agents.timeline import follow_up_of
from streams.mapping import (
    alert_record,
    fhir_risk_assessment,
    recent_entry,
    recent_study,
    risk_record,
)
from streams.metrics import ALERTS, RESCORES
from streams.pipeline import Pipeline
from streams.records import Alert, Quantification, RiskAssessment
from triage.fhir import ClinicalContext
from triage.risk import StudyOutcome, rescore

#: How many recently scored studies per patient are kept for re-scoring.
MAX_RECENT_STUDIES = 10


def context_of(pipeline: Pipeline, pseudonym: str) -> ClinicalContext | None:
    """The patient's clinical context from ``patient_to_context`` (None: nothing known yet)."""
    stored = pipeline.tables["patient_to_context"].get(pseudonym)
    return ClinicalContext.from_dict(stored) if stored else None


async def send_alert(
    pipeline: Pipeline, risk: RiskAssessment, outcome: StudyOutcome
) -> Alert | None:
    """Send the alert ``outcome`` raises (None when it raises nothing) once, and remember it."""
    memo = outcome.alert_memo(risk.scored_at)
    if memo is None:
        return None
    alert = alert_record(risk, outcome)
    fhir = fhir_risk_assessment(alert)
    await send_alert_once(pipeline, risk.patient_pseudonym, outcome.alert_key, memo, alert, fhir)
    ALERTS.labels(level=alert.level).inc()
    return alert


def first_score_revision(pipeline: Pipeline, quantification: Quantification, digest: str) -> int:
    """The revision a (re)delivered first score of a study is sent as.

    0 for a study never scored. A redelivery after a crash finds the study remembered: it keeps
    the revision the study reached (the same record again), or the next one when the model's
    features changed since. Never 0 again after a re-score, so a stale first score cannot
    follow revision 12 on ``triage.risk`` (the store also keeps the highest revision).
    """
    recent = pipeline.tables["patient_to_recent_studies"].get(quantification.patient_pseudonym)
    entry = (recent or {}).get(quantification.study_uid)
    if entry is None:
        return 0
    revision = int(entry["revision"])
    return revision if entry["digest"] == digest else revision + 1


def remember_study(
    pipeline: Pipeline, quantification: Quantification, outcome: StudyOutcome, revision: int = 0
) -> None:
    """Keep a scored study for re-scoring when late clinical data arrives (bounded per patient)."""
    table = pipeline.tables["patient_to_recent_studies"]
    recent = dict(table.get(quantification.patient_pseudonym) or {})
    recent[quantification.study_uid] = recent_entry(quantification, outcome.risk, revision)
    newest = sorted(recent.items(), key=lambda kv: kv[1]["quantification"]["ct_time"])
    table[quantification.patient_pseudonym] = dict(newest[-MAX_RECENT_STUDIES:])


async def rescore_recent(pipeline: Pipeline, pseudonym: str, arrived: str) -> int:
    """Re-score the patient's studies with a CT within the horizon before ``arrived`` (ISO).

    One core call (:func:`triage.risk.assess.rescore`); returns how many new risk records
    (same ``risk_id``, ``revision`` + 1) were sent: only studies whose model features changed
    since their last score, so a redelivered resource sends nothing.
    """
    table = pipeline.tables["patient_to_recent_studies"]
    recent: dict[str, Any] | None = table.get(pseudonym)
    if not recent:
        return 0
    await settle_pending_alerts(pipeline, pseudonym)  # the memos the decisions read, complete
    await pipeline.policies_read()
    studies = {uid: recent_study(entry) for uid, entry in recent.items()}
    fhir = pipeline.settings.fhir
    started = time.perf_counter()
    rescored = rescore(
        [study for _, study in studies.values()],
        context_of(pipeline, pseudonym),
        pipeline.model_for,
        pipeline.policy_for,
        fhir.observation_window_h,
        pipeline.tables["alerted_studies"],
        arrived,
        fhir.rescore_horizon_h,
    )
    scoring_s = time.perf_counter() - started
    updated = dict(recent)
    for study, outcome in rescored:
        uid = study.findings.study_uid
        revision = study.revision + 1
        quantification = studies[uid][0]
        follow = follow_up_of(pipeline, quantification)  # the same change as its first score
        risk = risk_record(quantification, outcome.risk, time.time(), scoring_s, revision, follow)
        await send_confirmed(pipeline.topic(t.TRIAGE_RISK.name), key=pseudonym.encode(), value=risk)
        await send_alert(pipeline, risk, outcome)
        updated[uid] = {**recent[uid], "digest": outcome.risk.features_digest, "revision": revision}
        RESCORES.inc()
    if rescored:
        table[pseudonym] = updated
    return len(rescored)
