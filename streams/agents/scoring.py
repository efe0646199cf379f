"""The scoring shell shared by the risk agent and the clinical agent's re-scores (no agent here).

Both call the risk core (:mod:`triage.risk.assess`) once and send what it returns the same way:
the ``triage.risk`` record, and the alert it raises to ``triage.alerts`` and, as a FHIR R4
RiskAssessment, to ``triage.alerts.fhir``, in one Kafka transaction with the memo of
``alerted_studies`` (:mod:`streams.agents.alert_ledger`), which remembers each study's highest
alert across crashes and replays; ``patient_to_recent_studies`` keeps each patient's recently
scored studies (the newest :data:`MAX_RECENT_STUDIES`) for re-scoring after late clinical data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from streams import topics as t
from streams.agents.alert_ledger import AlertPlan, Lease, ledger_of, send_once
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
from triage.risk import StudyOutcome, rescore, score_study

#: How many recently scored studies per patient are kept for re-scoring.
MAX_RECENT_STUDIES = 10


def context_of(pipeline: Pipeline, pseudonym: str) -> ClinicalContext | None:
    """The patient's clinical context from ``patient_to_context`` (None: nothing known yet)."""
    stored = pipeline.tables["patient_to_context"].get(pseudonym)
    return ClinicalContext.from_dict(stored) if stored else None


async def send_alert(
    pipeline: Pipeline,
    lease: Lease,
    risk: RiskAssessment,
    outcome: StudyOutcome,
    redecide: Callable[[], StudyOutcome],
) -> Alert | None:
    """Send the alert ``outcome`` raises (None when none) and remember it, in one transaction.

    ``redecide``: the same core call against the ledger as it stands (after a fenced send).
    """
    decided = [outcome]
    sent: list[Alert] = []

    def plan() -> AlertPlan:
        current = decided.pop() if decided else redecide()
        memo = current.alert_memo(risk.scored_at)
        if memo is None:
            return None
        alert = alert_record(risk, current)
        sent[:] = [alert]
        key = risk.patient_pseudonym.encode()
        fhir = json.dumps(fhir_risk_assessment(alert)).encode()
        records = [(t.TRIAGE_ALERTS.name, key, alert.to_bytes()),
                   (t.TRIAGE_ALERTS_FHIR.name, key, fhir)]  # fmt: skip
        return current.alert_key, memo, records

    if not await send_once(pipeline, lease, plan):
        return None
    ALERTS.labels(level=sent[0].level).inc()
    return sent[0]


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


async def rescore_recent(pipeline: Pipeline, lease: Lease, pseudonym: str, arrived: str) -> int:
    """Re-score the patient's studies with a CT within the horizon before ``arrived`` (ISO).

    ``lease``: the alert ledger's lease on the patient's partition, taken before deciding.

    One core call (:func:`triage.risk.assess.rescore`); returns how many new risk records
    (same ``risk_id``, ``revision`` + 1) were sent: only studies whose model features changed
    since their last score, so a redelivered resource sends nothing.
    """
    table = pipeline.tables["patient_to_recent_studies"]
    recent: dict[str, Any] | None = table.get(pseudonym)
    if not recent:
        return 0
    studies = {uid: recent_study(entry) for uid, entry in recent.items()}
    fhir = pipeline.settings.fhir
    context = context_of(pipeline, pseudonym)
    model = pipeline.deps.risk_model
    ledger = ledger_of(pipeline)
    started = time.perf_counter()
    rescored = rescore(
        [study for _, study in studies.values()],
        context,
        model,
        pipeline.policy_for,
        fhir.observation_window_h,
        ledger,
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
        await pipeline.topic(t.TRIAGE_RISK.name).send(key=pseudonym.encode(), value=risk)
        findings, policy = study.findings, pipeline.policy_for(study.findings.hospital)

        def redecide(f: Any = findings, p: Any = policy) -> StudyOutcome:
            return score_study(f, context, model, p, fhir.observation_window_h, ledger)

        await send_alert(pipeline, lease, risk, outcome, redecide)
        updated[uid] = {**recent[uid], "digest": outcome.risk.features_digest, "revision": revision}
        RESCORES.inc()
    if rescored:
        table[pseudonym] = updated
    return len(rescored)
