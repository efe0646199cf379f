"""Quantification joined with the patient's clinical context -> risk -> alert.

``ct.quantification`` is co-partitioned with ``fhir.resources``, so the patient's context is in
the local partition of ``patient_to_context``. Every study yields one ``triage.risk`` record
(same ``risk_id`` on a redelivery); an alert is raised once per study, model version and
threshold version: ``alerted_studies`` remembers it across restarts and replays.

Late clinical data: ``patient_to_recent_studies`` keeps each patient's recently scored studies.
When the clinical agent folds a resource into a context, :func:`rescore_recent` scores those
studies again whose CT lies within ``rescore_horizon_h`` of the resource's arrival; a new
``triage.risk`` record (same ``risk_id``, ``revision`` + 1) supersedes the old one in the
store's upsert, and only when the model's features actually changed (idempotent on replays).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from streams import topics as t
from streams.agents.base import handle_or_dead_letter, parse_or_dead_letter
from streams.app import Pipeline
from streams.dlq import StreamReason, dead_letter
from streams.metrics import ALERTS, END_TO_END_SECONDS, MESSAGES, RESCORES, STAGE_SECONDS
from streams.records import (
    Alert,
    CapacityEvent,
    CapacityEventKind,
    Contribution,
    Quantification,
    RiskAssessment,
)
from triage.alerts.policy import (
    AlertDecision,
    AlertKindValues,
    RiskLevelValues,
    alert_id,
    completeness_note,
    decide_alert,
    risk_id,
)
from triage.exceptions import TriageError
from triage.fhir.context import ClinicalContext
from triage.fhir.features import clinical_features, completeness, feature_vector
from triage.fhir.outbound import risk_assessment

logger = logging.getLogger(__name__)

STAGE = "risk"


def register(pipeline: Pipeline) -> None:
    """Declare the scoring agent and the table of alerted studies."""
    app = pipeline.app
    settings = pipeline.settings
    alerted_studies = app.Table(
        "alerted_studies",
        default=None,
        partitions=settings.kafka.partitions,
    )
    pipeline.tables["alerted_studies"] = alerted_studies
    patient_to_recent_studies = app.Table(
        "patient_to_recent_studies",
        default=None,
        partitions=settings.kafka.partitions,
    )
    pipeline.tables["patient_to_recent_studies"] = patient_to_recent_studies
    patient_to_context = pipeline.tables["patient_to_context"]
    dlq = pipeline.topic(t.CT_QUANTIFICATION.dlq)
    risk_topic = pipeline.topic(t.TRIAGE_RISK.name)
    capacity_events = pipeline.topic(t.CAPACITY_EVENTS.name)

    @app.agent(pipeline.topic(t.CT_QUANTIFICATION.name), name="score_risk")
    async def score_risk(stream: Any) -> None:
        async def handle(event: Any) -> None:
            quantification = await parse_or_dead_letter(event, Quantification, dlq, STAGE)
            if quantification is None:
                return
            try:
                risk = assess(pipeline, quantification, patient_to_context)
            except (TriageError, ValueError) as e:
                reason = getattr(e, "reason", StreamReason.SCORING_FAILED)
                await dead_letter(dlq, event, stage=STAGE, reason=reason, error=e)
                return
            await risk_topic.send(key=event.key, value=risk.to_bytes())
            remember_study(pipeline, quantification, risk)
            END_TO_END_SECONDS.observe(risk.latency_s)
            STAGE_SECONDS.labels(stage="scoring").observe(risk.timings.scoring_s)
            await capacity_events.send(
                key=risk.hospital.encode(),
                value=CapacityEvent(
                    kind=CapacityEventKind.PIPELINE_RISK,
                    hospital=risk.hospital,
                    patient_pseudonym=risk.patient_pseudonym,
                    event_time=risk.ct_time,
                    probability=risk.probability,
                ).to_bytes(),
            )
            await raise_alert_once(pipeline, risk)
            MESSAGES.labels(stage=STAGE).inc()

        async for event in stream.events():
            await handle_or_dead_letter(handle, event, dlq, STAGE)


async def raise_alert_once(pipeline: Pipeline, risk: RiskAssessment) -> Alert | None:
    """Send the alert a risk raises, once per study, model version and threshold version.

    A later score of the study that reaches a higher level sends one escalation alert per level
    reached (``alerted_studies`` remembers the highest level sent, across restarts). The
    alert goes to ``triage.alerts`` and, as a FHIR R4 RiskAssessment, to
    ``triage.alerts.fhir``. Returns it (None when nothing new was raised).
    """
    alerted_studies = pipeline.tables["alerted_studies"]
    key = alert_id(risk.study_uid, risk.model_version, risk.threshold_version)
    policy = pipeline.policy_for(risk.hospital)
    alert_from = policy.alert_from if policy.threshold_version == risk.threshold_version else None
    decision = decide_alert(
        risk.study_uid,
        risk.model_version,
        risk.threshold_version,
        risk.level,
        risk.alert,
        alerted_studies.get(key),
        alert_from=alert_from or RiskLevelValues.HIGH,
    )
    if decision is None:
        return None
    level_threshold = (
        policy.levels.get(RiskLevelValues(decision.level)) if alert_from is not None else None
    )
    alert = to_alert(risk, decision, level_threshold)
    key_bytes = risk.patient_pseudonym.encode()
    await pipeline.topic(t.TRIAGE_ALERTS.name).send(key=key_bytes, value=alert.to_bytes())
    await pipeline.topic(t.TRIAGE_ALERTS_FHIR.name).send(
        key=key_bytes, value=json.dumps(fhir_risk_assessment(alert)).encode()
    )
    alerted_studies[key] = {
        "level": str(decision.level),
        "alert_id": alert.alert_id,
        "raised_at": alert.raised_at,
    }
    ALERTS.labels(level=alert.level).inc()
    return alert


def features_for(
    pipeline: Pipeline, quantification: Quantification, contexts: Any
) -> dict[str, float | None]:
    """The model's feature vector of one study: biomarkers + the clinical context at CT time."""
    stored = contexts.get(quantification.patient_pseudonym)
    context = ClinicalContext.from_dict(stored) if stored else None
    ct_time = datetime.fromisoformat(quantification.ct_time)
    window_h = pipeline.settings.fhir.observation_window_h
    clinical = clinical_features(context, ct_time, window_h) if context else {}
    return feature_vector(quantification.biomarkers, clinical)


def features_digest(features: dict[str, float | None]) -> str:
    """A short stable digest of a feature vector (did late data change what the model sees?)."""
    return hashlib.sha256(json.dumps(features, sort_keys=True).encode()).hexdigest()[:16]


def remember_study(
    pipeline: Pipeline, quantification: Quantification, risk: RiskAssessment
) -> None:
    """Keep a scored study for re-scoring when late clinical data arrives (bounded per patient)."""
    table = pipeline.tables["patient_to_recent_studies"]
    recent = dict(table.get(quantification.patient_pseudonym) or {})
    recent[quantification.study_uid] = {
        "quantification": quantification.model_dump(mode="json"),
        "digest": features_digest(features_for(pipeline, quantification, _contexts(pipeline))),
        "revision": risk.revision,
    }
    newest = sorted(recent.items(), key=lambda kv: kv[1]["quantification"]["ct_time"])
    table[quantification.patient_pseudonym] = dict(newest[-MAX_RECENT_STUDIES:])


MAX_RECENT_STUDIES = 10


async def rescore_recent(pipeline: Pipeline, pseudonym: str, arrived: str) -> int:
    """Re-score the patient's studies with a CT within the horizon before ``arrived`` (ISO).

    Returns how many new risk records were sent: a study is re-scored only when its model
    features changed since its last score, so a redelivered resource sends nothing.
    """
    table = pipeline.tables["patient_to_recent_studies"]
    recent = table.get(pseudonym)
    if not recent:
        return 0
    horizon = timedelta(hours=pipeline.settings.fhir.rescore_horizon_h)
    arrived_at = datetime.fromisoformat(arrived)
    updated = dict(recent)
    sent = 0
    for study_uid, item in recent.items():
        quantification = Quantification.model_validate(item["quantification"])
        if arrived_at - datetime.fromisoformat(quantification.ct_time) > horizon:
            continue
        digest = features_digest(features_for(pipeline, quantification, _contexts(pipeline)))
        if digest == item["digest"]:
            continue
        risk = assess(pipeline, quantification, _contexts(pipeline))
        risk = risk.model_copy(update={"revision": int(item["revision"]) + 1})
        await pipeline.topic(t.TRIAGE_RISK.name).send(key=pseudonym.encode(), value=risk.to_bytes())
        await raise_alert_once(pipeline, risk)
        updated[study_uid] = {**item, "digest": digest, "revision": risk.revision}
        RESCORES.inc()
        sent += 1
    if sent:
        table[pseudonym] = updated
    return sent


def _contexts(pipeline: Pipeline) -> Any:
    return pipeline.tables["patient_to_context"]


def assess(pipeline: Pipeline, quantification: Quantification, contexts: Any) -> RiskAssessment:
    """Score one quantified study against its patient's clinical context."""
    started = time.perf_counter()
    model = pipeline.deps.risk_model
    policy = pipeline.policy_for(quantification.hospital)
    features = features_for(pipeline, quantification, contexts)
    score = model.score(features)
    probability = float(score.probability)
    scoring_s = time.perf_counter() - started
    return RiskAssessment(
        risk_id=risk_id(quantification.study_uid, model.version),
        study_uid=quantification.study_uid,
        patient_pseudonym=quantification.patient_pseudonym,
        probability=probability,
        level=str(policy.level(probability)),
        alert=policy.should_alert(probability),
        model_version=model.version,
        threshold_version=policy.threshold_version,
        threshold=policy.threshold,
        biomarkers=quantification.biomarkers,
        regional=quantification.regional,
        top_features=[
            Contribution(
                feature=c.feature,
                value=c.value,
                contribution=c.contribution,
                direction=str(c.direction),
            )
            for c in score.top_features
        ],
        completeness=str(completeness(features)),
        completeness_note=completeness_note(features, pipeline.settings.fhir.observation_window_h),
        ct_time=quantification.ct_time,
        hospital=quantification.hospital,
        published_at=quantification.published_at,
        scored_at=time.time(),
        timings=quantification.timings.model_copy(update={"scoring_s": scoring_s}),
    )


def to_alert(
    risk: RiskAssessment,
    decision: AlertDecision | None = None,
    level_threshold: float | None = None,
) -> Alert:
    """The alert an emergency physician sees for a risk above threshold."""
    return Alert(
        alert_id=decision.alert_id
        if decision is not None
        else alert_id(risk.study_uid, risk.model_version, risk.threshold_version),
        risk_id=risk.risk_id,
        study_uid=risk.study_uid,
        patient_pseudonym=risk.patient_pseudonym,
        probability=risk.probability,
        level=risk.level,
        model_version=risk.model_version,
        threshold_version=risk.threshold_version,
        lesion_percent=risk.biomarkers.get("lesion_percent", 0.0),
        top_features=risk.top_features,
        completeness=risk.completeness,
        ct_time=risk.ct_time,
        hospital=risk.hospital,
        raised_at=risk.scored_at,
        kind=str(decision.kind) if decision is not None else AlertKindValues.INITIAL,
        escalated_from=str(decision.previous_level)
        if decision is not None and decision.previous_level is not None
        else None,
        previous_alert_id=decision.previous_alert_id if decision is not None else None,
        level_threshold=level_threshold,
        completeness_note=risk.completeness_note,
        revision=risk.revision,
        ct_severity_score=risk.ct_severity_score,
        bilateral=risk.bilateral,
    )


def fhir_risk_assessment(alert: Alert) -> dict[str, Any]:
    """The alert as a FHIR R4 RiskAssessment (validated), ready to POST to an EHR."""
    return risk_assessment(
        alert_id=alert.alert_id,
        patient_pseudonym=alert.patient_pseudonym,
        study_uid=alert.study_uid,
        probability=alert.probability,
        level=alert.level,
        occurrence=datetime.fromtimestamp(alert.raised_at, tz=UTC).isoformat(),
        model_version=alert.model_version,
        threshold_version=alert.threshold_version,
        top_features=[c.model_dump() for c in alert.top_features],
        completeness=alert.completeness_note or alert.completeness,
        escalated_from=alert.escalated_from,
    )
