"""FHIR resources -> per-patient clinical context table (and ICU / ventilator census changes).

The table ``patient_to_context`` is keyed by the pseudonymous patient id and changelog-backed,
so a restarted worker recovers it; ``fhir.resources`` is co-partitioned with
``ct.quantification``, so the risk agent reads the context of its own patients locally.

A Condition or Observation of a patient whose Patient resource has not arrived yet is valid but
*pending*: it waits in ``patient_to_pending`` (changelog-backed too) and is folded in when the
Patient comes. After ``pending_ttl_s`` it is dead-lettered as ``unknown_patient``: by a timer
that reads the table (Faust tables cannot be written outside a stream), and by the next event of
that patient, which also clears it from the table. Once a context changes, recent CT studies of
the patient are re-scored (:func:`streams.agents.scoring.rescore_recent`), and the ICU or
ventilator census changes a resource implies (:func:`triage.fhir.icu.census_changes`) go to
``capacity.events``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from streams import topics as t
from streams.agents.base import handle_or_dead_letter, record_or_dead_letter
from streams.agents.scoring import rescore_recent
from streams.dlq import build_dead_letter, dead_letter
from streams.mapping import capacity_event
from streams.metrics import MESSAGES, PENDING_FHIR
from streams.pipeline import Pipeline
from streams.records import DeadLetter, FhirResourceEvent
from triage.exceptions import FhirRejected, FhirRejectionReason
from triage.fhir import (
    ClinicalContext,
    FhirVersionValues,
    census_changes,
    declared_version,
    normalise_r5,
)

logger = logging.getLogger(__name__)

STAGE = "clinical_context"
NEEDS_PATIENT = frozenset(
    {"Condition", "Observation", "MedicationRequest", "MedicationAdministration"}
)


class PendingResources:
    """Resources held in ``patient_to_pending`` until their Patient arrives, or dead-lettered.

    Faust tables are written only from inside a stream: the timer's sweep reads the table and
    dead-letters what is past ``ttl_s`` (remembering it in ``expired_sent``); the next event of
    that patient clears it from the table.
    """

    def __init__(self, table: Any, dlq: Any, ttl_s: float, max_per_patient: int) -> None:
        self.table = table
        self.dlq = dlq
        self.ttl_s = ttl_s
        self.max_per_patient = max_per_patient
        self.expired_sent: set[str] = set()  # event ids already dead-lettered

    async def expire(
        self, pseudonym: str, held: list[dict[str, Any]], now: float
    ) -> list[dict[str, Any]]:
        """Dead-letter held entries past their time; return the ones still waiting."""
        waiting = []
        for item in held:
            if now - float(item["held_at"]) < self.ttl_s:
                waiting.append(item)
            elif item["event"]["event_id"] not in self.expired_sent:
                self.expired_sent.add(item["event"]["event_id"])
                await self.dlq.send(key=pseudonym.encode(), value=_expired_letter(item))
        return waiting

    async def hold(self, key: str, record: FhirResourceEvent) -> None:
        """Hold a resource until the patient's Patient arrives (the oldest goes when full)."""
        now = time.time()
        held = await self.expire(key, list(self.table.get(key) or []), now)
        if len(held) >= self.max_per_patient:
            oldest = held.pop(0)
            self.expired_sent.add(oldest["event"]["event_id"])
            await self.dlq.send(key=key.encode(), value=_expired_letter(oldest))
        held.append({"event": record.model_dump(mode="json"), "held_at": now})
        self.table[key] = held
        logger.debug("holding %d resources until the Patient of %s arrives", len(held), key)

    async def release(self, key: str, context: ClinicalContext) -> ClinicalContext:
        """Fold the patient's held resources into ``context`` (a bad one is dead-lettered)."""
        held = self.table.get(key)
        if not held:
            return context
        waiting = await self.expire(key, list(held), time.time())
        for item in waiting:
            record = FhirResourceEvent.model_validate(item["event"])
            try:
                context = context.apply(record.resource, declared_version(record.fhir_version))
            except FhirRejected as e:
                letter = _held_letter(item, e.reason, f"{type(e).__name__}: {e}")
                await self.dlq.send(key=key.encode(), value=letter)
        del self.table[key]
        return context

    async def sweep(self) -> int:
        """Dead-letter what waited too long (the table is only read); how many are held."""
        now = time.time()
        count = 0
        for key, held in list(self.table.items()):
            count += len(held or [])
            await self.expire(key, list(held or []), now)
        return count


def register(pipeline: Pipeline) -> None:
    """Declare the clinical context and pending tables, their agent and the pending sweep."""
    app = pipeline.app
    fhir = pipeline.settings.fhir
    partitions = pipeline.settings.kafka.partitions
    patient_to_context = app.Table("patient_to_context", default=None, partitions=partitions)
    patient_to_pending = app.Table("patient_to_pending", default=None, partitions=partitions)
    pipeline.tables["patient_to_context"] = patient_to_context
    pipeline.tables["patient_to_pending"] = patient_to_pending
    dlq = pipeline.topic(t.FHIR_RESOURCES.dlq)
    capacity_events = pipeline.topic(t.CAPACITY_EVENTS.name)
    icu_locations = pipeline.registry.icu_locations  # Location ids of ICU units
    pending = PendingResources(
        patient_to_pending, dlq, fhir.pending_ttl_s, fhir.pending_max_per_patient
    )

    @app.agent(pipeline.topic(t.FHIR_RESOURCES.name), name="update_clinical_context")
    async def update_clinical_context(stream: Any) -> None:
        async def handle(event: Any) -> None:
            record = await record_or_dead_letter(event, FhirResourceEvent, dlq, STAGE)
            if record is None:
                return
            key = record.patient_pseudonym
            try:
                version = declared_version(record.fhir_version)
                stored = patient_to_context.get(key)
                context = ClinicalContext.from_dict(stored) if stored else ClinicalContext()
                if record.resource_type in NEEDS_PATIENT and not context.has_patient:
                    ClinicalContext().apply(record.resource, version)  # bad input fails now
                    await pending.hold(key, record)
                    return
                context = context.apply(record.resource, version)
            except FhirRejected as e:
                await dead_letter(dlq, event, stage=STAGE, reason=e.reason, error=e)
                return
            if record.resource_type == "Patient":
                context = await pending.release(key, context)
            patient_to_context[key] = context.to_dict()
            shaped = normalise_r5(record.resource) if version is FhirVersionValues.R5 else None
            for change in census_changes(shaped or record.resource, icu_locations):
                await capacity_events.send(
                    key=record.hospital.encode(),
                    value=capacity_event(change, record.hospital, record.patient_pseudonym),
                )
            await rescore_recent(pipeline, key, record.event_time)
            MESSAGES.labels(stage=STAGE).inc()

        async for event in stream.events():
            await handle_or_dead_letter(handle, event, dlq, STAGE)

    @app.timer(interval=fhir.pending_sweep_s)
    async def sweep_pending() -> None:
        """Dead-letter resources whose patient did not arrive in time (table is read only)."""
        PENDING_FHIR.set(await pending.sweep())


def _expired_letter(item: dict[str, Any]) -> DeadLetter:
    return _held_letter(
        item,
        FhirRejectionReason.UNKNOWN_PATIENT,
        "no Patient resource arrived for this patient within the pending time",
    )


def _held_letter(item: dict[str, Any], reason: str, error: str) -> DeadLetter:
    record = item["event"]
    return build_dead_letter(
        stage=STAGE,
        reason=reason,
        error=error,
        source_topic=t.FHIR_RESOURCES.name,
        source_partition=None,
        source_offset=None,
        key=record["patient_pseudonym"],
        payload=json.dumps(record),
    )
