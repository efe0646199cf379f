"""ICU census and at-risk pipeline per hospital unit -> ICU forecast on ``capacity.forecasts``.

``capacity.events`` has one partition keyed by hospital, so one worker holds each unit's census
in ``hospital_to_census`` (changelog-backed, keyed ``hospital`` or ``hospital/unit``). The census
also counts ICU admissions per clinical day (last 28 days): the arrivals model forecasts the
admissions not yet announced by a scored CT. The forecast is recomputed on every census change,
from the clinical clock of the latest event (the replay runs in accelerated time), and on a
schedule for live units (clock within a day of the wall clock). A forecast whose probability of
exceeding capacity within the horizon reaches ``capacity_breach_probability`` is a breach alert.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from streams import topics as t
from streams.agents.base import handle_or_dead_letter, parse_or_dead_letter
from streams.app import Pipeline
from streams.dlq import StreamReason, dead_letter
from streams.metrics import MESSAGES
from streams.records import CapacityEvent, CapacityEventKind, CapacityForecast, ForecastDay
from triage.capacity import Occupant, PipelinePatient, forecast_icu
from triage.capacity.arrivals import fit_arrivals
from triage.exceptions import TriageError

logger = logging.getLogger(__name__)

STAGE = "capacity"
#: A scored patient stops counting as "in the pipeline" after this long without ICU admission.
PIPELINE_HORIZON = timedelta(days=14)
#: Days of admission counts kept for the arrivals model.
ADMISSION_HISTORY_DAYS = 28


def census_key(event: CapacityEvent) -> str:
    """``hospital`` or ``hospital/unit``: one census (and one forecast) per ICU unit."""
    return f"{event.hospital}/{event.unit}" if event.unit else event.hospital


def apply_event(census: dict[str, Any], event: CapacityEvent) -> dict[str, Any]:
    """Return the census after one event (pure; JSON-safe dicts in and out)."""
    occupants = dict(census.get("occupants", {}))
    pipeline = dict(census.get("pipeline", {}))
    admissions = dict(census.get("admissions", {}))
    patient = event.patient_pseudonym
    if event.kind is CapacityEventKind.ICU_ADMISSION:
        if patient not in occupants:
            day = datetime.fromisoformat(event.event_time).date().isoformat()
            admissions[day] = admissions.get(day, 0) + 1
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
    oldest = (now - timedelta(days=ADMISSION_HISTORY_DAYS)).date().isoformat()
    admissions = {d: n for d, n in admissions.items() if d >= oldest}
    return {"occupants": occupants, "pipeline": pipeline, "admissions": admissions, "clock": clock}


def daily_admissions(census: dict[str, Any], now: datetime) -> list[float]:
    """ICU admissions per day for the last full days before ``now`` (oldest first)."""
    counts = census.get("admissions", {})
    days = [(now - timedelta(days=k)).date().isoformat() for k in range(14, 0, -1)]
    return [float(counts.get(d, 0)) for d in days]


def forecast_from_census(
    hospital: str,
    census: dict[str, Any],
    capacity: int,
    days: int = 7,
    breach_probability: float = 0.2,
    unit: str | None = None,
    now: datetime | None = None,
) -> CapacityForecast:
    """Forecast the next ``days`` of ICU occupancy for one unit's census."""
    now = now or datetime.fromisoformat(census["clock"])
    history = daily_admissions(census, now)
    pipeline = [
        PipelinePatient(patient=p, p_icu=float(v[0]), at=datetime.fromisoformat(v[1]))
        for p, v in census["pipeline"].items()
    ]
    arrivals, log_sd = [0.0] * days, 0.0
    if sum(history) > 0:
        fitted = fit_arrivals(history, horizon_days=days)
        # The pipeline's patients are part of tomorrow's admissions: do not count them twice.
        announced = sum(p.p_icu for p in pipeline)
        arrivals = [max(0.0, a - announced / days) for a in fitted.expected]
        log_sd = fitted.log_sd
    forecast = forecast_icu(
        occupants=[
            Occupant(patient=p, admitted_at=datetime.fromisoformat(at))
            for p, at in census["occupants"].items()
        ],
        pipeline=pipeline,
        now=now,
        capacity_beds=capacity,
        days=days,
        hospital=f"{hospital}/{unit}" if unit else hospital,
        arrivals=arrivals,
        arrival_log_sd=log_sd,
    )
    key = f"{hospital}|{unit}" if unit else hospital
    return CapacityForecast(
        forecast_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"ctriage-forecast|{key}|{now}")),
        hospital=hospital,
        unit=unit,
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
                lower95=d.lower95,
                upper95=d.upper95,
            )
            for d in forecast.days
        ],
        expected_arrivals=float(sum(arrivals)),
        p_breach=forecast.p_breach,
        breach_alert=forecast.p_breach >= breach_probability,
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
    worker = pipeline.settings.worker

    def forecast_for(
        hospital: str, unit: str | None, census: dict[str, Any], now: datetime | None = None
    ) -> CapacityForecast:
        capacity = deps.hospital_capacity_beds.get(hospital, deps.default_capacity_beds)
        forecast = forecast_from_census(
            hospital,
            census,
            capacity,
            days=worker.forecast_days,
            breach_probability=worker.capacity_breach_probability,
            unit=unit,
            now=now,
        )
        if forecast.breach_alert:
            logger.warning(
                "ICU capacity breach alert %s%s: P(> %d beds within %d days) = %.2f",
                hospital,
                f"/{unit}" if unit else "",
                capacity,
                worker.forecast_days,
                forecast.p_breach or 0.0,
            )
        return forecast

    @app.agent(pipeline.topic(t.CAPACITY_EVENTS.name), name="forecast_capacity")
    async def forecast_capacity(stream: Any) -> None:
        async def handle(event: Any) -> None:
            record = await parse_or_dead_letter(event, CapacityEvent, dlq, STAGE)
            if record is None:
                return
            key = census_key(record)
            try:
                census = apply_event(hospital_to_census.get(key) or {}, record)
                forecast = forecast_for(record.hospital, record.unit, census)
            except (TriageError, ValueError) as e:
                reason = getattr(e, "reason", StreamReason.FORECAST_FAILED)
                await dead_letter(dlq, event, stage=STAGE, reason=reason, error=e)
                return
            hospital_to_census[key] = {**census, "hospital": record.hospital, "unit": record.unit}
            await out.send(key=record.hospital.encode(), value=forecast.to_bytes())
            MESSAGES.labels(stage=STAGE).inc()

        async for event in stream.events():
            await handle_or_dead_letter(handle, event, dlq, STAGE)

    if worker.capacity_refresh_s > 0:

        @app.timer(interval=worker.capacity_refresh_s, on_leader=True)
        async def refresh_capacity_forecasts() -> None:
            """Recompute live units' forecasts as time passes without census changes."""
            wall = datetime.now(UTC)
            for census in list(hospital_to_census.values()):
                if not census or not is_live(census, wall):
                    continue
                try:
                    forecast = forecast_for(census["hospital"], census.get("unit"), census, wall)
                except (TriageError, ValueError, KeyError):
                    logger.exception("scheduled ICU forecast failed")
                    continue
                await out.send(key=forecast.hospital.encode(), value=forecast.to_bytes())


def is_live(census: dict[str, Any], wall: datetime) -> bool:
    """A census fed in (near) real time: its clinical clock is within a day of the wall clock."""
    clock = datetime.fromisoformat(census["clock"])
    return clock.tzinfo is not None and abs(wall - clock) < timedelta(days=1)
