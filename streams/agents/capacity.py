"""ICU census and at-risk pipeline per hospital -> ICU occupancy forecast on ``capacity.forecasts``.

``capacity.events`` has one partition keyed by hospital, so one worker holds each hospital's
census in ``hospital_to_census`` (changelog-backed). The forecast is recomputed on every census
change, from the clinical clock of the latest event (the replay runs in accelerated time).
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from streams import topics as t
from streams.agents.base import handle_or_dead_letter, parse_or_dead_letter
from streams.app import Pipeline
from streams.dlq import StreamReason, dead_letter
from streams.metrics import MESSAGES
from streams.records import CapacityEvent, CapacityEventKind, CapacityForecast, ForecastDay
from triage.capacity import Occupant, PipelinePatient, forecast_icu
from triage.exceptions import TriageError

logger = logging.getLogger(__name__)

STAGE = "capacity"
#: A scored patient stops counting as "in the pipeline" after this long without ICU admission.
PIPELINE_HORIZON = timedelta(days=14)


def apply_event(census: dict[str, Any], event: CapacityEvent) -> dict[str, Any]:
    """Return the census after one event (pure; JSON-safe dicts in and out)."""
    occupants = dict(census.get("occupants", {}))
    pipeline = dict(census.get("pipeline", {}))
    patient = event.patient_pseudonym
    if event.kind is CapacityEventKind.ICU_ADMISSION:
        occupants[patient] = event.event_time
        pipeline.pop(patient, None)
    elif event.kind is CapacityEventKind.ICU_DISCHARGE:
        occupants.pop(patient, None)
    elif patient not in occupants:
        pipeline[patient] = [event.probability or 0.0, event.event_time]
    clock = max(filter(None, [census.get("clock"), event.event_time]), key=datetime.fromisoformat)
    now = datetime.fromisoformat(clock)
    pipeline = {
        p: v for p, v in pipeline.items() if now - datetime.fromisoformat(v[1]) < PIPELINE_HORIZON
    }
    return {"occupants": occupants, "pipeline": pipeline, "clock": clock}


def forecast_from_census(hospital: str, census: dict[str, Any], capacity: int) -> CapacityForecast:
    """Forecast the next 7 days of ICU occupancy for one hospital's census."""
    now = datetime.fromisoformat(census["clock"])
    forecast = forecast_icu(
        occupants=[
            Occupant(patient=p, admitted_at=datetime.fromisoformat(at))
            for p, at in census["occupants"].items()
        ],
        pipeline=[
            PipelinePatient(patient=p, p_icu=float(v[0]), at=datetime.fromisoformat(v[1]))
            for p, v in census["pipeline"].items()
        ],
        now=now,
        capacity_beds=capacity,
        hospital=hospital,
    )
    return CapacityForecast(
        forecast_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"ctriage-forecast|{hospital}|{now}")),
        hospital=hospital,
        issued_for=now.isoformat(),
        issued_at=time.time(),
        capacity=capacity,
        occupancy_now=len(census["occupants"]),
        pipeline_patients=len(census["pipeline"]),
        days=[
            ForecastDay(
                date=d.date.isoformat(),
                expected=d.expected,
                lower80=d.lower80,
                upper80=d.upper80,
                p_exceed=d.p_exceed,
            )
            for d in forecast.days
        ],
    )


def register(pipeline: Pipeline) -> None:
    """Declare the census table and the forecasting agent."""
    app = pipeline.app
    hospital_to_census = app.Table(
        "hospital_to_census",
        default=None,
        partitions=1,
    )
    pipeline.tables["hospital_to_census"] = hospital_to_census
    dlq = pipeline.topic(t.CAPACITY_EVENTS.dlq)
    out = pipeline.topic(t.CAPACITY_FORECASTS.name)
    deps = pipeline.deps

    @app.agent(pipeline.topic(t.CAPACITY_EVENTS.name), name="forecast_capacity")
    async def forecast_capacity(stream: Any) -> None:
        async def handle(event: Any) -> None:
            record = await parse_or_dead_letter(event, CapacityEvent, dlq, STAGE)
            if record is None:
                return
            try:
                census = apply_event(hospital_to_census.get(record.hospital) or {}, record)
                capacity = deps.hospital_capacity_beds.get(
                    record.hospital, deps.default_capacity_beds
                )
                forecast = forecast_from_census(record.hospital, census, capacity)
            except (TriageError, ValueError) as e:
                reason = getattr(e, "reason", StreamReason.FORECAST_FAILED)
                await dead_letter(dlq, event, stage=STAGE, reason=reason, error=e)
                return
            hospital_to_census[record.hospital] = census
            await out.send(key=record.hospital.encode(), value=forecast.to_bytes())
            MESSAGES.labels(stage=STAGE).inc()

        async for event in stream.events():
            await handle_or_dead_letter(handle, event, dlq, STAGE)
