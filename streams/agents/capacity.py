"""ICU and ventilator census per hospital unit -> forecasts on ``capacity.forecasts``.

``capacity.events`` has one partition keyed by hospital, so one worker holds each unit's census
in ``hospital_to_census`` (changelog-backed, keyed ``hospital`` or ``hospital/unit``): ICU
occupants, ventilated patients, scored patients in the pipeline (their ventilation risk), and ICU
admissions and ventilation starts per clinical day (last 28 days) for the arrivals model, which
forecasts those not yet announced by a scored CT. One forecast record per unit carries the ICU
beds and, in ``ventilators``, the ventilators in use. It is recomputed on every census change,
from the clinical clock of the latest event (the replay runs in accelerated time), and on a
schedule for live units (clock within a day of the wall clock). A forecast whose probability of
exceeding capacity (beds or ventilators) within the horizon reaches
``capacity_breach_probability`` is a breach alert.

Capacity of a unit: ``CTRIAGE_WORKER__UNIT_CAPACITY`` (configuration) first, then the FHIR
Locations and Devices of ``CTRIAGE_WORKER__CAPACITY_LOCATIONS`` (:mod:`triage.capacity.locations`),
then the hospital's beds (``icu_capacity_beds``) and ``icu_ventilators``. A scored CT names no
unit: in a hospital whose units are known its patient joins the first unit (by id), else the
hospital-level census; a ventilation Procedure without location joins the patient's ICU unit.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from streams import topics as t
from streams.agents.base import handle_or_dead_letter, parse_or_dead_letter
from streams.app import Pipeline
from streams.dlq import StreamReason, dead_letter
from streams.metrics import CAPACITY_BREACH_PROBABILITY, CAPACITY_IN_USE, MESSAGES
from streams.records import (
    CapacityEvent,
    CapacityEventKind,
    CapacityForecast,
    ForecastDay,
    VentilatorForecast,
)
from streams.settings import Settings
from triage.capacity import Occupant, PipelinePatient, forecast_icu
from triage.capacity import census as census_model
from triage.capacity.arrivals import fit_arrivals
from triage.capacity.locations import UnitCapacity, read_resources, unit_capacities
from triage.exceptions import TriageError

logger = logging.getLogger(__name__)

STAGE = "capacity"
#: A scored patient stops counting as "in the pipeline" after this long without ICU admission.
PIPELINE_HORIZON = timedelta(days=14)
#: Days of admission counts kept for the arrivals model.
ADMISSION_HISTORY_DAYS = 28
_VENTILATION_KINDS = {CapacityEventKind.VENTILATION_START, CapacityEventKind.VENTILATION_END}


@dataclass(frozen=True)
class CapacityRegistry:
    """Staffed ICU beds and ventilators per ``(hospital, unit)``; ``unit`` None: the hospital."""

    units: dict[tuple[str, str | None], UnitCapacity] = field(default_factory=dict)
    default_beds: dict[str, int] = field(default_factory=dict)
    fallback_beds: int = 12
    fallback_ventilators: int = 8

    def beds(self, hospital: str, unit: str | None) -> int:
        """Staffed ICU beds of a unit (or of the hospital's ICU)."""
        known = self.units.get((hospital, unit))
        if known is not None and known.beds is not None:
            return known.beds
        return self.default_beds.get(hospital, self.fallback_beds)

    def ventilators(self, hospital: str, unit: str | None) -> int:
        """Ventilators of a unit (or of the hospital's ICU)."""
        known = self.units.get((hospital, unit))
        if known is not None and known.ventilators is not None:
            return known.ventilators
        return self.fallback_ventilators

    def admitting_unit(self, hospital: str) -> str | None:
        """Where a scored patient of a hospital with ICU units is expected (first unit by id)."""
        units = sorted(unit for h, unit in self.units if h == hospital and unit is not None)
        return units[0] if units else None

    @property
    def icu_locations(self) -> frozenset[str]:
        """Ids of the Locations known as ICU units (Encounter.location references them)."""
        return frozenset(unit for _, unit in self.units if unit is not None)


def load_registry(
    settings: Settings,
    default_beds: dict[str, int] | None = None,
    fallback_beds: int | None = None,
) -> CapacityRegistry:
    """The capacity registry from configuration and the FHIR Locations file (read once)."""
    worker = settings.worker
    units: dict[tuple[str, str | None], UnitCapacity] = {}
    if worker.capacity_locations is not None:
        resources = read_resources(worker.capacity_locations)
        for (hospital, unit), capacity in unit_capacities(resources, worker.hospital).items():
            units[(hospital, unit)] = capacity
    for key, counts in worker.unit_capacity.items():
        hospital, _, unit = key.partition("/")
        before = units.get((hospital, unit or None))
        units[(hospital, unit or None)] = UnitCapacity(
            hospital=hospital,
            unit=unit,
            beds=counts.get("beds", before.beds if before else None),
            ventilators=counts.get("ventilators", before.ventilators if before else None),
        )
    return CapacityRegistry(
        units=units,
        default_beds=dict(default_beds or {}),
        fallback_beds=worker.icu_capacity_beds if fallback_beds is None else fallback_beds,
        fallback_ventilators=worker.icu_ventilators,
    )


def census_key(event: CapacityEvent) -> str:
    """``hospital`` or ``hospital/unit``: one census (and one forecast) per ICU unit."""
    return f"{event.hospital}/{event.unit}" if event.unit else event.hospital


def apply_event(census: dict[str, Any], event: CapacityEvent) -> dict[str, Any]:
    """Return the census after one event (pure; JSON-safe dicts in and out)."""
    occupants = dict(census.get("occupants", {}))
    pipeline = dict(census.get("pipeline", {}))
    admissions = dict(census.get("admissions", {}))
    ventilated = dict(census.get("ventilated", {}))
    at_risk = dict(census.get("at_risk", {}))  # scored, not ventilated (ICU occupants included)
    starts = dict(census.get("ventilation_starts", {}))
    patient = event.patient_pseudonym
    day = datetime.fromisoformat(event.event_time).date().isoformat()
    if event.kind is CapacityEventKind.ICU_ADMISSION:
        if patient not in occupants:
            admissions[day] = admissions.get(day, 0) + 1
        occupants[patient] = event.event_time
        pipeline.pop(patient, None)
    elif event.kind is CapacityEventKind.ICU_DISCHARGE:
        occupants.pop(patient, None)
        ventilated.pop(patient, None)  # nobody leaves the ICU on a ventilator here
        at_risk.pop(patient, None)
    elif event.kind is CapacityEventKind.VENTILATION_START:
        if patient not in ventilated:
            starts[day] = starts.get(day, 0) + 1
        ventilated[patient] = event.event_time
        at_risk.pop(patient, None)
        pipeline.pop(patient, None)
    elif event.kind is CapacityEventKind.VENTILATION_END:
        ventilated.pop(patient, None)
    else:
        risk = [event.probability or 0.0, event.event_time]
        if patient not in occupants:
            pipeline[patient] = risk
        if patient not in ventilated:
            at_risk[patient] = risk
    clock = max(filter(None, [census.get("clock"), event.event_time]), key=datetime.fromisoformat)
    now = datetime.fromisoformat(clock)

    def recent(scored: dict[str, Any]) -> dict[str, Any]:
        return {
            p: v for p, v in scored.items() if now - datetime.fromisoformat(v[1]) < PIPELINE_HORIZON
        }

    oldest = (now - timedelta(days=ADMISSION_HISTORY_DAYS)).date().isoformat()
    return {
        "occupants": occupants,
        "pipeline": recent(pipeline),
        "admissions": {d: n for d, n in admissions.items() if d >= oldest},
        "ventilated": ventilated,
        "at_risk": recent(at_risk),
        "ventilation_starts": {d: n for d, n in starts.items() if d >= oldest},
        "clock": clock,
    }


def daily_admissions(census: dict[str, Any], now: datetime, key: str = "admissions") -> list[float]:
    """Counts per day (ICU admissions, or ``ventilation_starts``) for the last 14 full days."""
    counts = census.get(key, {})
    days = [(now - timedelta(days=k)).date().isoformat() for k in range(14, 0, -1)]
    return [float(counts.get(d, 0)) for d in days]


def _resource_forecast(
    name: str,
    holders: dict[str, str],
    scored: dict[str, Any],
    history: list[float],
    now: datetime,
    capacity: int,
    days: int,
    los: census_model.LengthOfStay,
) -> tuple[census_model.CapacityForecast, float]:
    """Forecast one resource (beds or ventilators); returns it and its expected arrivals."""
    pipeline = [
        PipelinePatient(patient=p, p_icu=float(v[0]), at=datetime.fromisoformat(v[1]))
        for p, v in scored.items()
    ]
    arrivals, log_sd = [0.0] * days, 0.0
    if sum(history) > 0:
        fitted = fit_arrivals(history, horizon_days=days)
        # The pipeline's patients are part of tomorrow's arrivals: do not count them twice.
        announced = sum(p.p_icu for p in pipeline)
        arrivals = [max(0.0, a - announced / days) for a in fitted.expected]
        log_sd = fitted.log_sd
    forecast = forecast_icu(
        occupants=[
            Occupant(patient=p, admitted_at=datetime.fromisoformat(at)) for p, at in holders.items()
        ],
        pipeline=pipeline,
        now=now,
        capacity_beds=capacity,
        days=days,
        los_mean_days=los.mean_days,
        los_sigma=los.sigma,
        hospital=name,
        arrivals=arrivals,
        arrival_log_sd=log_sd,
    )
    return forecast, float(sum(arrivals))


def _days(forecast: census_model.CapacityForecast) -> list[ForecastDay]:
    return [
        ForecastDay(
            date=d.date.isoformat(),
            expected=d.expected,
            lower80=d.lower80,
            upper80=d.upper80,
            p_exceed=d.p_exceed,
            lower95=d.lower95,
            upper95=d.upper95,
            median=d.median,
        )
        for d in forecast.days
    ]


def forecast_from_census(
    hospital: str,
    census: dict[str, Any],
    capacity: int,
    days: int = 7,
    breach_probability: float = 0.2,
    unit: str | None = None,
    now: datetime | None = None,
    ventilators: int | None = None,
    icu_stay: census_model.LengthOfStay = census_model.ICU_STAY,
    ventilation: census_model.LengthOfStay = census_model.VENTILATION,
) -> CapacityForecast:
    """Forecast the next ``days`` of ICU occupancy (and ventilators in use) for one unit.

    Without ``ventilators`` (the unit's ventilator count) the record carries no ventilator part.
    ``icu_stay`` and ``ventilation``: how long a bed and a ventilator stay taken.
    """
    now = now or datetime.fromisoformat(census["clock"])
    name = f"{hospital}/{unit}" if unit else hospital
    beds, arrivals = _resource_forecast(
        name,
        census["occupants"],
        census["pipeline"],
        daily_admissions(census, now),
        now,
        capacity,
        days,
        icu_stay,
    )
    vent_part = None
    if ventilators is not None:
        vent, vent_arrivals = _resource_forecast(
            f"{name}|ventilators",
            census.get("ventilated", {}),
            census.get("at_risk", {}),
            daily_admissions(census, now, "ventilation_starts"),
            now,
            ventilators,
            days,
            ventilation,
        )
        vent_part = VentilatorForecast(
            capacity=ventilators,
            in_use_now=len(census.get("ventilated", {})),
            days=_days(vent),
            expected_arrivals=vent_arrivals,
            p_breach=vent.p_breach,
            breach_alert=vent.p_breach >= breach_probability,
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
        days=_days(beds),
        expected_arrivals=arrivals,
        p_breach=beds.p_breach,
        breach_alert=beds.p_breach >= breach_probability,
        ventilators=vent_part,
    )


def unit_of_patient(censuses: dict[str, dict[str, Any]], hospital: str, patient: str) -> str | None:
    """The ICU unit of ``hospital`` where ``patient`` is an occupant, else None.

    Places a ventilation Procedure without a location; None also for the hospital-level ICU.
    """
    for census in censuses.values():
        if census and census.get("hospital") == hospital and patient in census.get("occupants", {}):
            return census.get("unit")
    return None


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
    registry = load_registry(
        pipeline.settings, deps.hospital_capacity_beds, deps.default_capacity_beds
    )
    icu_stay = census_model.LengthOfStay(worker.icu_stay_mean_days, worker.icu_stay_sigma)
    ventilation = census_model.LengthOfStay(worker.ventilation_mean_days, worker.ventilation_sigma)

    def forecast_for(
        hospital: str, unit: str | None, census: dict[str, Any], now: datetime | None = None
    ) -> CapacityForecast:
        forecast = forecast_from_census(
            hospital,
            census,
            registry.beds(hospital, unit),
            days=worker.forecast_days,
            breach_probability=worker.capacity_breach_probability,
            unit=unit,
            now=now,
            ventilators=registry.ventilators(hospital, unit),
            icu_stay=icu_stay,
            ventilation=ventilation,
        )
        where = f"{hospital}/{unit}" if unit else hospital
        publish_capacity_gauges(forecast)
        if forecast.breach_alert:
            logger.warning(
                "ICU capacity breach alert %s: P(> %d beds within %d days) = %.2f",
                where,
                forecast.capacity,
                worker.forecast_days,
                forecast.p_breach or 0.0,
            )
        vent = forecast.ventilators
        if vent is not None and vent.breach_alert:
            logger.warning(
                "ventilator breach alert %s: P(> %d ventilators within %d days) = %.2f",
                where,
                vent.capacity,
                worker.forecast_days,
                vent.p_breach or 0.0,
            )
        return forecast

    def place(record: CapacityEvent) -> str | None:
        """The unit of an event that names none (a Procedure without location, a scored CT)."""
        if record.kind in _VENTILATION_KINDS:
            censuses = dict(hospital_to_census.items())
            return unit_of_patient(censuses, record.hospital, record.patient_pseudonym)
        if record.kind is CapacityEventKind.PIPELINE_RISK:
            return registry.admitting_unit(record.hospital)
        return None

    @app.agent(pipeline.topic(t.CAPACITY_EVENTS.name), name="forecast_capacity")
    async def forecast_capacity(stream: Any) -> None:
        async def handle(event: Any) -> None:
            record = await parse_or_dead_letter(event, CapacityEvent, dlq, STAGE)
            if record is None:
                return
            if record.unit is None:
                record = record.model_copy(update={"unit": place(record)})
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


def publish_capacity_gauges(forecast: CapacityForecast) -> None:
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
