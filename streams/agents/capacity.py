"""``capacity.events`` -> one capacity core call per event -> ``capacity.forecasts``.

``capacity.events`` has one partition keyed by hospital, so one worker holds each unit's census
in ``hospital_to_census`` (changelog-backed, keyed ``hospital`` or ``hospital/unit``). Each event
goes to :meth:`triage.capacity.unit_forecast.CapacityPlanner.on_event`, which places it in its
unit, updates that unit's census and forecasts the unit's ICU beds and ventilators; a timer asks
:meth:`~triage.capacity.unit_forecast.CapacityPlanner.refresh` for live units' forecasts as time
passes. The forecast's breach probabilities and census go to Prometheus; a breach alert is
logged. Capacity of a unit: :mod:`triage.capacity.registry` (configuration, FHIR Locations).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from streams import topics as t
from streams.agents.base import handle_or_dead_letter, record_or_dead_letter
from streams.dlq import StreamReason, dead_letter
from streams.mapping import census_event, forecast_record
from streams.metrics import CAPACITY_BREACH_PROBABILITY, CAPACITY_IN_USE, MESSAGES
from streams.pipeline import Pipeline
from streams.records import CapacityEvent, UnitForecastRecord
from triage.capacity import UnitForecast
from triage.exceptions import TriageError

logger = logging.getLogger(__name__)

STAGE = "capacity"


def register(pipeline: Pipeline) -> None:
    """Declare the census table, the forecasting agent and the live units' refresh."""
    app = pipeline.app
    hospital_to_census = app.Table("hospital_to_census", default=None, partitions=1)
    pipeline.tables["hospital_to_census"] = hospital_to_census
    dlq = pipeline.topic(t.CAPACITY_EVENTS.dlq)
    out = pipeline.topic(t.CAPACITY_FORECASTS.name)
    planner = pipeline.capacity_planner()
    worker = pipeline.settings.worker

    @app.agent(pipeline.topic(t.CAPACITY_EVENTS.name), name="forecast_capacity")
    async def forecast_capacity(stream: Any) -> None:
        async def handle(event: Any) -> None:
            record = await record_or_dead_letter(event, CapacityEvent, dlq, STAGE)
            if record is None:
                return
            try:
                # off the event loop: a forecast grows with the unit's census (0.1 s for a few
                # hundred scored patients) and would hold back heartbeats and other agents
                censuses = dict(hospital_to_census.items())
                update = await asyncio.to_thread(planner.on_event, census_event(record), censuses)
            except (TriageError, ValueError) as e:
                reason = getattr(e, "reason", StreamReason.FORECAST_FAILED)
                await dead_letter(dlq, event, stage=STAGE, reason=reason, error=e)
                return
            hospital_to_census[update.key] = update.census
            await out.send(key=record.hospital.encode(), value=issue(update.forecast))
            MESSAGES.labels(stage=STAGE).inc()

        async for event in stream.events():
            await handle_or_dead_letter(handle, event, dlq, STAGE)

    if worker.capacity_refresh_s > 0:

        @app.timer(interval=worker.capacity_refresh_s, on_leader=True)
        async def refresh_capacity_forecasts() -> None:
            """Recompute live units' forecasts as time passes without census changes."""
            wall = datetime.now(UTC)
            for census in list(hospital_to_census.values()):
                try:
                    forecast = await asyncio.to_thread(planner.refresh, census, wall)
                except (TriageError, ValueError, KeyError):
                    logger.exception("scheduled ICU forecast failed")
                    continue
                if forecast is not None:
                    await out.send(key=forecast.hospital.encode(), value=issue(forecast))

    def issue(forecast: UnitForecast) -> UnitForecastRecord:
        """The forecast's record, its gauges published and its breach alerts logged."""
        record = forecast_record(forecast, issued_at=time.time())
        publish_capacity_gauges(record)
        log_breach_alerts(record, worker.forecast_days)
        return record


def log_breach_alerts(forecast: UnitForecastRecord, days: int) -> None:
    """A warning per resource whose breach probability reached the alert level."""
    where = f"{forecast.hospital}/{forecast.unit}" if forecast.unit else forecast.hospital
    if forecast.breach_alert:
        logger.warning(
            "ICU capacity breach alert %s: P(> %d beds within %d days) = %.2f",
            where, forecast.capacity, days, forecast.p_breach or 0.0,
        )  # fmt: skip
    vent = forecast.ventilators
    if vent is not None and vent.breach_alert:
        logger.warning(
            "ventilator breach alert %s: P(> %d ventilators within %d days) = %.2f",
            where, vent.capacity, days, vent.p_breach or 0.0,
        )  # fmt: skip


def publish_capacity_gauges(forecast: UnitForecastRecord) -> None:
    """Expose the forecast's breach probabilities and census to Prometheus (alert rules)."""
    unit = forecast.unit or ""
    parts = [("icu_beds", forecast.p_breach, forecast.occupancy_now)]
    if forecast.ventilators is not None:
        vent = forecast.ventilators
        parts.append(("ventilators", vent.p_breach, vent.in_use_now))
    for resource, p_breach, in_use in parts:
        labels = {"hospital": forecast.hospital, "unit": unit, "resource": resource}
        if p_breach is not None:
            CAPACITY_BREACH_PROBABILITY.labels(**labels).set(p_breach)
        CAPACITY_IN_USE.labels(**labels).set(in_use)
