"""The timeline shell used by the risk agent (no agent here): the patient's CTs over time.

``patient_to_timeline`` (changelog-backed, keyed by pseudonym, co-partitioned with
``ct.quantification``) keeps each patient's quantified studies. For each new study one core call
(:func:`triage.timeline.follow_up`) returns the points to keep, the change since the prior and
the first CT, and the worsening decision; a worsening alert goes to ``triage.alerts`` once per
study and rule version (remembered in ``alerted_studies`` under its deterministic id).
"""

from __future__ import annotations

from typing import Any

from streams.agents.alert_log import send_alert_once
from streams.mapping import timeline_point, worsening_alert_record
from streams.metrics import ALERTS
from streams.pipeline import Pipeline
from streams.records import Alert, Quantification, RiskAssessment
from triage.alerts import WorseningRule
from triage.timeline import FollowUp, follow_up

TABLE = "patient_to_timeline"


def declare_table(pipeline: Pipeline) -> None:
    """Declare ``patient_to_timeline`` on the app (the risk agent's ``register`` calls this)."""
    partitions = pipeline.settings.kafka.partitions
    pipeline.tables[TABLE] = pipeline.app.Table(TABLE, default=None, partitions=partitions)


def rule_of(pipeline: Pipeline, hospital: str) -> WorseningRule:
    """The hospital's worsening rule: its audited policy's, else the worker's settings."""
    audited = pipeline.policy_for(hospital).worsening
    if audited is not None:
        return audited
    worker = pipeline.settings.worker
    return WorseningRule(
        lesion_rise_points=worker.worsening_lesion_rise_points,
        severity_rise_points=worker.worsening_severity_rise_points,
        aerated_fall_points=worker.worsening_aerated_fall_points,
        within_days=worker.worsening_within_days,
    )


def follow_up_of(pipeline: Pipeline, quantification: Quantification) -> FollowUp:
    """The study's place in its patient's timeline and the timeline to store (one core call)."""
    stored: list[dict[str, Any]] = pipeline.tables[TABLE].get(quantification.patient_pseudonym)
    rule = rule_of(pipeline, quantification.hospital)
    return follow_up(stored or [], timeline_point(quantification), rule)


def remember_timeline(pipeline: Pipeline, pseudonym: str, follow: FollowUp) -> None:
    """Store the patient's updated timeline."""
    pipeline.tables[TABLE][pseudonym] = [p.to_dict() for p in follow.points]


async def send_worsening(
    pipeline: Pipeline, risk: RiskAssessment, follow: FollowUp
) -> Alert | None:
    """Send the study's worsening alert, once per study and rule version (None: none)."""
    decision = follow.worsening
    alerted = pipeline.tables["alerted_studies"]
    if decision is None or alerted.get(decision.alert_id):
        return None
    alert = worsening_alert_record(risk, decision)
    memo = {"kind": "worsening", "alert_id": decision.alert_id, "raised_at": risk.scored_at}
    await send_alert_once(pipeline, risk.patient_pseudonym, decision.alert_id, memo, alert)
    ALERTS.labels(level="worsening").inc()
    return alert
