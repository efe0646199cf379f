"""FHIR resources -> per-patient clinical context table (and ICU census changes).

The table ``patient_to_context`` is keyed by the pseudonymous patient id and changelog-backed,
so a restarted worker recovers it; ``fhir.resources`` is co-partitioned with
``ct.quantification``, so the risk agent reads the context of its own patients locally.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from streams import topics as t
from streams.agents.base import handle_or_dead_letter, parse_or_dead_letter
from streams.app import Pipeline
from streams.dlq import dead_letter
from streams.metrics import MESSAGES
from streams.records import CapacityEvent, CapacityEventKind, FhirResourceEvent
from triage.exceptions import FhirRejected
from triage.features import ClinicalContext
from triage.icu import IcuChange, icu_change

logger = logging.getLogger(__name__)

STAGE = "clinical_context"


def register(pipeline: Pipeline) -> None:
    """Declare the clinical context table and its agent."""
    app = pipeline.app
    patient_to_context = app.Table(
        "patient_to_context",
        default=None,
        partitions=pipeline.settings.kafka.partitions,
    )
    pipeline.tables["patient_to_context"] = patient_to_context
    dlq = pipeline.topic(t.FHIR_RESOURCES.dlq)
    capacity_events = pipeline.topic(t.CAPACITY_EVENTS.name)

    @app.agent(pipeline.topic(t.FHIR_RESOURCES.name), name="update_clinical_context")
    async def update_clinical_context(stream: Any) -> None:
        async def handle(event: Any) -> None:
            record = await parse_or_dead_letter(event, FhirResourceEvent, dlq, STAGE)
            if record is None:
                return
            try:
                stored = patient_to_context.get(record.patient_pseudonym)
                context = ClinicalContext.from_dict(stored) if stored else ClinicalContext()
                patient_to_context[record.patient_pseudonym] = context.apply(
                    record.resource
                ).to_dict()
            except FhirRejected as e:
                await dead_letter(dlq, event, stage=STAGE, reason=e.reason, error=e)
                return
            change = icu_change(record.resource)
            if change is not None:
                await capacity_events.send(
                    key=record.hospital.encode(),
                    value=_capacity_event(record, change).to_bytes(),
                )
            MESSAGES.labels(stage=STAGE).inc()

        async for event in stream.events():
            await handle_or_dead_letter(handle, event, dlq, STAGE)


def _capacity_event(record: FhirResourceEvent, change: IcuChange) -> CapacityEvent:
    kind = CapacityEventKind.ICU_ADMISSION if change.admitted else CapacityEventKind.ICU_DISCHARGE
    when: datetime = change.at
    return CapacityEvent(
        kind=kind,
        hospital=record.hospital,
        patient_pseudonym=record.patient_pseudonym,
        event_time=when.isoformat(),
    )
