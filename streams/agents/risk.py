"""Quantification joined with the patient's clinical context -> risk -> alert.

``ct.quantification`` is co-partitioned with ``fhir.resources``, so the patient's context is in
the local partition of ``patient_to_context``. Every study yields one ``triage.risk`` record
(same ``risk_id`` on a redelivery); an alert is raised once per study, model version and
threshold version: ``alerted_studies`` remembers it across restarts and replays.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from streams import topics as t
from streams.agents.base import handle_or_dead_letter, parse_or_dead_letter
from streams.app import Pipeline
from streams.dlq import StreamReason, dead_letter
from streams.metrics import ALERTS, END_TO_END_SECONDS, MESSAGES, STAGE_SECONDS
from streams.records import (
    Alert,
    CapacityEvent,
    CapacityEventKind,
    Contribution,
    Quantification,
    RiskAssessment,
)
from triage.alerts import alert_id, risk_id
from triage.exceptions import TriageError
from triage.features import ClinicalContext, clinical_features, completeness, feature_vector

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
    patient_to_context = pipeline.tables["patient_to_context"]
    dlq = pipeline.topic(t.CT_QUANTIFICATION.dlq)
    risk_topic = pipeline.topic(t.TRIAGE_RISK.name)
    alert_topic = pipeline.topic(t.TRIAGE_ALERTS.name)
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
            if risk.alert:
                alert = to_alert(risk)
                if alerted_studies.get(alert.alert_id) is None:
                    await alert_topic.send(key=event.key, value=alert.to_bytes())
                    alerted_studies[alert.alert_id] = {"raised_at": alert.raised_at}
                    ALERTS.labels(level=alert.level).inc()
            MESSAGES.labels(stage=STAGE).inc()

        async for event in stream.events():
            await handle_or_dead_letter(handle, event, dlq, STAGE)


def assess(pipeline: Pipeline, quantification: Quantification, contexts: Any) -> RiskAssessment:
    """Score one quantified study against its patient's clinical context."""
    started = time.perf_counter()
    model = pipeline.deps.risk_model
    policy = pipeline.policy_for(quantification.hospital)
    stored = contexts.get(quantification.patient_pseudonym)
    context = ClinicalContext.from_dict(stored) if stored else None
    ct_time = datetime.fromisoformat(quantification.ct_time)
    clinical = clinical_features(context, ct_time) if context else {}
    features = feature_vector(quantification.biomarkers, clinical)
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
        ct_time=quantification.ct_time,
        hospital=quantification.hospital,
        published_at=quantification.published_at,
        scored_at=time.time(),
        timings=quantification.timings.model_copy(update={"scoring_s": scoring_s}),
    )


def to_alert(risk: RiskAssessment) -> Alert:
    """The alert an emergency physician sees for a risk above threshold."""
    return Alert(
        alert_id=alert_id(risk.study_uid, risk.model_version, risk.threshold_version),
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
    )
