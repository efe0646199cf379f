"""Sinks: risks, alerts, forecasts and dead letters -> the reporting store (idempotent upserts).

Ids are deterministic, so an at-least-once redelivery rewrites the same rows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from dashboards import (
    insert_dead_letter,
    upsert_alert,
    upsert_forecast_rows,
    upsert_risk,
    upsert_study,
    upsert_threshold_audit,
    upsert_treatment,
)
from streams import topics as t
from streams.agents.base import handle_or_dead_letter, in_thread, record_or_dead_letter
from streams.dlq import StreamReason, dead_letter
from streams.metrics import MESSAGES
from streams.pipeline import Pipeline
from streams.records import (
    Alert,
    BurdenChange,
    DeadLetter,
    FhirResourceEvent,
    Record,
    RiskAssessment,
    ThresholdAudit,
    UnitForecastRecord,
)
from triage.exceptions import FhirRejected
from triage.fhir import treatment_of

logger = logging.getLogger(__name__)

STAGE = "store"
#: A store outage is retried for about a minute before the record is dead-lettered (kept).
STORE_ATTEMPTS = 6
STORE_BACKOFF_S = 1.0


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


def scored_study_row(record: RiskAssessment | Alert) -> dict[str, Any]:
    """The columns a risk row and an alert row share, from either record (built once)."""
    return {
        "study_uid": record.study_uid,
        "patient_pseudonym": record.patient_pseudonym,
        "probability": record.probability,
        "level": record.level,
        "model_version": record.model_version,
        "threshold_version": record.threshold_version,
        "top_features": [c.model_dump() for c in record.top_features],
        "completeness": record.completeness,
    }


def write_risk(engine: Engine, risk: RiskAssessment) -> None:
    """Upsert a risk and mark its study scored."""
    with engine.begin() as conn:
        upsert_risk(
            conn,
            {
                **scored_study_row(risk),
                "risk_id": risk.risk_id,
                "lesion_percent": risk.biomarkers.get("lesion_percent"),
                "ct_severity_score": risk.ct_severity_score,
                "bilateral": risk.bilateral,
                "scored_at": _utc(risk.scored_at),
                "latency_s": risk.latency_s,
                "revision": risk.revision,
                "ct_time": datetime.fromisoformat(risk.ct_time.replace("Z", "+00:00")),
                "ggo_percent": risk.biomarkers.get("ggo_percent"),
                "consolidation_percent": risk.biomarkers.get("consolidation_percent"),
                "rsna_category": risk.rsna_category or None,
                **change_columns("prior", risk.change_since_prior),
                **change_columns("first", risk.change_since_first),
            },
        )
        upsert_study(
            conn,
            {
                "study_uid": risk.study_uid,
                "patient_pseudonym": risk.patient_pseudonym,
                "status": "scored",
                "reason_code": None,
                "updated_at": _utc(risk.scored_at),
            },
        )


def change_columns(since: str, change: BurdenChange | None) -> dict[str, Any]:
    """The risks table's change columns since the ``prior`` or ``first`` CT (None: all NULL)."""
    return {
        f"{since}_study_uid": change.since_study_uid if change else None,
        f"{since}_ct_time": (
            datetime.fromisoformat(change.since_time.replace("Z", "+00:00")) if change else None
        ),
        f"interval_{since}_days": change.interval_days if change else None,
        f"lesion_from_{since}_percent": change.lesion_from_percent if change else None,
        f"lesion_change_{since}_points": change.lesion_points if change else None,
        f"lesion_change_{since}_per_day": change.lesion_points_per_day if change else None,
        f"severity_change_{since}_points": change.severity_points if change else None,
        f"severity_change_{since}_per_day": change.severity_points_per_day if change else None,
    }


def write_treatment(engine: Engine, event: FhirResourceEvent) -> None:
    """Upsert the coded treatment a medication resource records (other resources: nothing)."""
    treatment = treatment_of(event.resource)
    if treatment is None:
        return
    key = f"{event.patient_pseudonym}|{treatment.record_id}"
    with engine.begin() as conn:
        upsert_treatment(
            conn,
            {
                "treatment_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ctriage:treatment:{key}")),
                "patient_pseudonym": event.patient_pseudonym,
                "drug": treatment.drug,
                "treatment_class": treatment.treatment_class.value,
                "started_at": datetime.fromisoformat(treatment.started_at),
                "status": treatment.status,
                "given": treatment.given,
                "source": treatment.source,
            },
        )


def write_alert(engine: Engine, alert: Alert) -> None:
    """Upsert an alert."""
    with engine.begin() as conn:
        upsert_alert(
            conn,
            {
                **scored_study_row(alert),
                "alert_id": alert.alert_id,
                "lesion_percent": alert.lesion_percent,
                "ct_severity_score": alert.ct_severity_score,
                "bilateral": alert.bilateral,
                "raised_at": _utc(alert.raised_at),
                "kind": alert.kind,
                "escalated_from": alert.escalated_from,
                "completeness_note": alert.completeness_note,
                "hospital": alert.hospital,
                "rsna_category": alert.rsna_category or None,
                "change_text": alert.change_text() or None,
                "worsening_reasons": ",".join(alert.worsening_reasons) or None,
                "secondary_worsening": alert.secondary_worsening
                if alert.kind == "worsening"
                else None,
                **change_columns("earlier", alert.reported_change),
            },
        )


def write_audit(engine: Engine, audit: ThresholdAudit) -> None:
    """Upsert a policy change's audit record (who, when, old -> new, why)."""
    with engine.begin() as conn:
        upsert_threshold_audit(
            conn,
            {
                "audit_id": audit.audit_id,
                "hospital": audit.hospital,
                "changed_by": audit.changed_by,
                "role": audit.role,
                "source": audit.source,
                "changed_at": _utc(audit.changed_at),
                "old_version": audit.old_version,
                "new_version": audit.new_version,
                "old_policy": audit.old_policy,
                "new_policy": audit.new_policy,
                "reason": audit.reason,
                "audit_event": audit.audit_event,
            },
        )


def write_forecast(engine: Engine, forecast: UnitForecastRecord) -> None:
    """Upsert one row per forecast day and resource (ICU beds, then ventilators when known)."""
    issued_at = datetime.fromisoformat(forecast.issued_for)
    parts = [("icu_beds", "", forecast.capacity, forecast.occupancy_now, forecast.days,
              forecast.p_breach, forecast.breach_alert)]  # fmt: skip
    vent = forecast.ventilators
    if vent is not None:
        parts.append(("ventilators", "v", vent.capacity, vent.in_use_now, vent.days,
                      vent.p_breach, vent.breach_alert))  # fmt: skip
    rows = [
        {
            "forecast_id": f"{forecast.forecast_id}-{tag}{i + 1}",
            "hospital": forecast.hospital,
            "issued_at": issued_at,
            "day": datetime.fromisoformat(day.date).date(),
            "expected": day.expected,
            "lower80": day.lower80,
            "upper80": day.upper80,
            "capacity": capacity,
            "p_exceed": day.p_exceed,
            "unit": forecast.unit,
            "lower95": day.lower95,
            "upper95": day.upper95,
            "p_breach": p_breach,
            "breach_alert": breach_alert,
            "resource": resource,
            "occupancy_now": occupancy_now,
            "median": day.median,
        }
        for resource, tag, capacity, occupancy_now, days, p_breach, breach_alert in parts
        for i, day in enumerate(days)
    ]
    with engine.begin() as conn:
        upsert_forecast_rows(conn, rows)


def write_dead_letter(engine: Engine, topic: str, letter: DeadLetter) -> None:
    """Record a dead letter; a rejected study also gets its status."""
    with engine.begin() as conn:
        insert_dead_letter(
            conn,
            {
                "topic": topic,
                "stage": letter.stage,
                "reason_code": letter.reason_code,
                "payload": letter.payload,
                "error": letter.error,
                "source_topic": letter.source_topic,
                "source_partition": letter.source_partition,
                "source_offset": letter.source_offset,
                "at": _utc(letter.at),
            },
        )
        study = _study_of(letter.payload)
        if study is not None:
            upsert_study(
                conn,
                {
                    "study_uid": study[0],
                    "patient_pseudonym": study[1],
                    "status": "rejected",
                    "reason_code": letter.reason_code,
                    "updated_at": _utc(letter.at),
                },
            )


def _study_of(payload: str) -> tuple[str, str] | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("study_uid"), str):
        return data["study_uid"], str(data.get("patient_pseudonym", ""))
    return None


async def _write_with_retry(
    write: Callable[[Engine, Any], None], engine: Engine, record: Record
) -> None:
    delay_s = STORE_BACKOFF_S
    for attempt in range(1, STORE_ATTEMPTS + 1):
        try:
            await in_thread(write, engine, record)
            return
        except OperationalError:
            if attempt == STORE_ATTEMPTS:
                raise
            logger.warning("store unavailable (attempt %d), retrying in %.1fs", attempt, delay_s)
            await asyncio.sleep(delay_s)
            delay_s *= 2


def _dead_letter_writer(topic: str) -> Callable[[Engine, DeadLetter], None]:
    def write(engine: Engine, letter: DeadLetter) -> None:
        write_dead_letter(engine, topic, letter)

    return write


def _sink(
    pipeline: Pipeline,
    topic: str,
    record_type: type[Record],
    write: Callable[[Engine, Any], None],
) -> None:
    app = pipeline.app
    engine = pipeline.deps.store
    # A sink cannot dead-letter into the topic it reads; its parse failures go to the generic twin.
    dlq = pipeline.topic(t.TRIAGE_RISK.dlq)
    stage = f"{STAGE}:{topic}"

    async def sink(stream: Any) -> None:
        async def handle(event: Any) -> None:
            record = await record_or_dead_letter(event, record_type, dlq, stage)
            if record is None:
                return
            try:
                await _write_with_retry(write, engine, record)
            except SQLAlchemyError as e:
                reason = StreamReason.STORE_UNAVAILABLE
                await dead_letter(dlq, event, stage=stage, reason=reason, error=e)
                return
            MESSAGES.labels(stage=stage).inc()

        async for event in stream.events():
            await handle_or_dead_letter(handle, event, dlq, stage)

    app.agent(pipeline.topic(topic), name=f"store_{topic.replace('.', '_')}")(sink)


def _treatment_sink(pipeline: Pipeline) -> None:
    """Treatments from ``fhir.resources`` -> the ``treatments`` table.

    A malformed record is left alone here: the clinical context agent reads the same topic and
    dead-letters it (once). A store outage is retried, then dead-lettered like the other sinks.
    """
    engine = pipeline.deps.store
    dlq = pipeline.topic(t.TRIAGE_RISK.dlq)
    stage = f"{STAGE}:treatments"

    async def sink(stream: Any) -> None:
        async def handle(event: Any) -> None:
            record = event.value
            if not isinstance(record, FhirResourceEvent):
                return  # Malformed or empty: dead-lettered by update_clinical_context
            if record.resource_type not in {"MedicationRequest", "MedicationAdministration"}:
                return
            try:
                await _write_with_retry(write_treatment, engine, record)
            except FhirRejected:
                return  # unreadable treatment: dead-lettered by update_clinical_context
            except SQLAlchemyError as e:
                reason = StreamReason.STORE_UNAVAILABLE
                await dead_letter(dlq, event, stage=stage, reason=reason, error=e)
                return
            MESSAGES.labels(stage=stage).inc()

        async for event in stream.events():
            await handle_or_dead_letter(handle, event, dlq, stage)

    pipeline.app.agent(pipeline.topic(t.FHIR_RESOURCES.name), name="store_treatments")(sink)


def register(pipeline: Pipeline) -> None:
    """Declare one sink agent per stored topic."""
    _sink(pipeline, t.TRIAGE_RISK.name, RiskAssessment, write_risk)
    _sink(pipeline, t.TRIAGE_ALERTS.name, Alert, write_alert)
    _sink(pipeline, t.TRIAGE_AUDIT.name, ThresholdAudit, write_audit)
    _sink(pipeline, t.CAPACITY_FORECASTS.name, UnitForecastRecord, write_forecast)
    _treatment_sink(pipeline)
    for spec in t.ALL_TOPICS:
        if spec.has_dlq:
            _sink(
                pipeline,
                spec.dlq,
                DeadLetter,
                _dead_letter_writer(spec.dlq),
            )
