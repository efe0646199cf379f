"""``ct.quantification`` -> one risk core call -> ``triage.risk``, ``triage.alerts``, capacity.

``ct.quantification`` is co-partitioned with ``fhir.resources``, so the patient's context is in
the local partition of ``patient_to_context``. Every study yields one ``triage.risk`` record
(same ``risk_id`` on a redelivery); its alert is decided by :func:`triage.risk.assess.score_study`
against what ``alerted_studies`` remembers (once per study, model version and threshold version;
an escalation per higher level reached). The scored patient joins the capacity pipeline
(``capacity.events``). Late clinical data re-scores recent studies from the clinical agent
(:func:`streams.agents.scoring.rescore_recent`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from streams import topics as t
from streams.agents.alert_log import settle_pending_alerts
from streams.agents.base import handle_or_dead_letter, record_or_dead_letter, send_confirmed
from streams.agents.scoring import (
    context_of,
    first_score_revision,
    remember_study,
    send_alert,
)
from streams.agents.timeline import (
    declare_table,
    follow_up_of,
    remember_timeline,
    send_worsening,
)
from streams.dlq import StreamReason, dead_letter
from streams.failpoints import play_consumer_faults
from streams.mapping import findings, pipeline_risk_event, risk_record
from streams.metrics import END_TO_END_SECONDS, MESSAGES, STAGE_SECONDS
from streams.pipeline import Pipeline
from streams.records import Quantification
from triage.exceptions import TriageError
from triage.risk import score_study

logger = logging.getLogger(__name__)

STAGE = "risk"


def register(pipeline: Pipeline) -> None:
    """Declare the scoring agent, the table of alerted studies and that of recent studies."""
    app = pipeline.app
    partitions = pipeline.settings.kafka.partitions
    alerted_studies = app.Table("alerted_studies", default=None, partitions=partitions)
    pipeline.tables["alerted_studies"] = alerted_studies
    recent = app.Table("patient_to_recent_studies", default=None, partitions=partitions)
    pipeline.tables["patient_to_recent_studies"] = recent
    declare_table(pipeline)  # patient_to_timeline: change since prior CT, worsening alerts
    dlq = pipeline.topic(t.CT_QUANTIFICATION.dlq)
    risk_topic = pipeline.topic(t.TRIAGE_RISK.name)
    capacity_events = pipeline.topic(t.CAPACITY_EVENTS.name)
    window_h = pipeline.settings.fhir.observation_window_h

    @app.agent(pipeline.topic(t.CT_QUANTIFICATION.name), name="score_risk")
    async def score_risk(stream: Any) -> None:
        async def handle(event: Any) -> None:
            quantification = await record_or_dead_letter(event, Quantification, dlq, STAGE)
            if quantification is None:
                return
            # a worker stopped mid-alert for this patient: settled before anything is decided
            await settle_pending_alerts(pipeline, quantification.patient_pseudonym)
            await pipeline.policies_read()  # the hospital's levels, not the defaults
            started = time.perf_counter()
            try:
                outcome = score_study(
                    findings(quantification),
                    context_of(pipeline, quantification.patient_pseudonym),
                    pipeline.model_for(quantification.hospital),
                    pipeline.policy_for(quantification.hospital),
                    window_h,
                    alerted_studies,
                )
                follow = follow_up_of(pipeline, quantification)
            except (TriageError, ValueError) as e:
                reason = getattr(e, "reason", StreamReason.SCORING_FAILED)
                await dead_letter(dlq, event, stage=STAGE, reason=reason, error=e)
                return
            scoring_s = time.perf_counter() - started
            digest = outcome.risk.features_digest
            revision = first_score_revision(pipeline, quantification, digest)
            risk = risk_record(
                quantification, outcome.risk, time.time(), scoring_s, revision, follow
            )
            await send_confirmed(risk_topic, key=event.key, value=risk)
            remember_timeline(pipeline, quantification.patient_pseudonym, follow)
            remember_study(pipeline, quantification, outcome, revision)
            END_TO_END_SECONDS.observe(risk.latency_s)
            STAGE_SECONDS.labels(stage="scoring").observe(risk.timings.scoring_s)
            await capacity_events.send(key=risk.hospital.encode(), value=pipeline_risk_event(risk))
            await send_alert(pipeline, risk, outcome)
            await send_worsening(pipeline, risk, follow)
            MESSAGES.labels(stage=STAGE).inc()
            message = event.message
            logger.info(
                "scored study %s (%s-%d@%d) revision %d", quantification.study_uid,
                message.topic, message.partition, message.offset, revision,
            )  # fmt: skip
            # crash tests only (empty in production): tests/integration/test_stalled_partition.py
            play_consumer_faults(pipeline.settings.worker, pipeline.app.consumer, message.tp)

        async for event in stream.events():
            await handle_or_dead_letter(handle, event, dlq, STAGE)
