"""One ICU unit's forecast from its census: beds and ventilators, breach alerts (pure).

:class:`CapacityPlanner` is the capacity agent's core: for each census event it places the event
in its unit, applies it to that unit's census (:mod:`triage.capacity.unit_census`) and forecasts
the unit (:meth:`CapacityPlanner.on_event`); on a schedule it forecasts live units again
(:meth:`CapacityPlanner.refresh`). A forecast covers the unit's ICU beds and, when its
ventilators are known, the ventilators in use; a resource whose probability of exceeding
capacity within the horizon reaches ``breach_probability`` is a breach alert.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from triage.capacity.arrivals import fit_arrivals
from triage.capacity.census import (
    ICU_STAY,
    VENTILATION,
    CapacityForecast,
    LengthOfStay,
    Occupant,
    PipelinePatient,
    forecast_icu,
)
from triage.capacity.registry import CapacityRegistry
from triage.capacity.unit_census import (
    VENTILATION_KINDS,
    CensusEvent,
    apply_event,
    census_key,
    daily_admissions,
    is_live,
    unit_of_patient,
)
from triage.fhir.icu import CensusChangeValues


@dataclass(frozen=True)
class ResourceForecast:
    """One resource of a unit (ICU beds or ventilators): in use now, forecast, breach alert."""

    capacity: int
    in_use_now: int
    forecast: CapacityForecast
    expected_arrivals: float
    breach_alert: bool

    @property
    def p_breach(self) -> float:
        """P(use > capacity on some day of the horizon)."""
        return self.forecast.p_breach


@dataclass(frozen=True)
class UnitForecast:
    """An ICU unit's forecast issued for the clinical time ``issued_for``."""

    forecast_id: str
    hospital: str
    unit: str | None
    issued_for: datetime
    beds: ResourceForecast
    pipeline_patients: int
    ventilators: ResourceForecast | None = None


def _resource_forecast(
    name: str,
    holders: Mapping[str, str],
    scored: Mapping[str, Any],
    history: list[float],
    now: datetime,
    capacity: int,
    days: int,
    los: LengthOfStay,
) -> tuple[CapacityForecast, float]:
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


def forecast_from_census(
    hospital: str,
    census: Mapping[str, Any],
    capacity: int,
    days: int = 7,
    breach_probability: float = 0.2,
    unit: str | None = None,
    now: datetime | None = None,
    ventilators: int | None = None,
    icu_stay: LengthOfStay = ICU_STAY,
    ventilation: LengthOfStay = VENTILATION,
) -> UnitForecast:
    """Forecast the next ``days`` of ICU occupancy (and ventilators in use) for one unit.

    Without ``ventilators`` (the unit's ventilator count) the forecast has no ventilator part.
    ``icu_stay`` and ``ventilation``: how long a bed and a ventilator stay taken. ``now``: the
    census clock unless given.
    """
    now = now or datetime.fromisoformat(census["clock"])
    name = f"{hospital}/{unit}" if unit else hospital
    occupants = census["occupants"]
    beds, arrivals = _resource_forecast(
        name, occupants, census["pipeline"], daily_admissions(census, now), now, capacity, days,
        icu_stay,
    )  # fmt: skip
    vent_part = None
    if ventilators is not None:
        ventilated = census.get("ventilated", {})
        vent, vent_arrivals = _resource_forecast(
            f"{name}|ventilators", ventilated, census.get("at_risk", {}),
            daily_admissions(census, now, "ventilation_starts"), now, ventilators, days,
            ventilation,
        )  # fmt: skip
        vent_part = ResourceForecast(
            ventilators, len(ventilated), vent, vent_arrivals, vent.p_breach >= breach_probability
        )
    key = f"{hospital}|{unit}" if unit else hospital
    return UnitForecast(
        forecast_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"ctriage-forecast|{key}|{now}")),
        hospital=hospital,
        unit=unit,
        issued_for=now,
        beds=ResourceForecast(
            capacity, len(occupants), beds, arrivals, beds.p_breach >= breach_probability
        ),
        pipeline_patients=len(census["pipeline"]),
        ventilators=vent_part,
    )


@dataclass(frozen=True)
class CensusUpdate:
    """A unit's census after one event (store it under ``key``) and its new forecast."""

    key: str
    census: dict[str, Any]
    forecast: UnitForecast


@dataclass(frozen=True)
class CapacityPlanner:
    """Census events -> per-unit censuses and forecasts, for the units of a registry."""

    registry: CapacityRegistry = field(default_factory=CapacityRegistry)
    days: int = 7
    breach_probability: float = 0.2
    icu_stay: LengthOfStay = ICU_STAY
    ventilation: LengthOfStay = VENTILATION

    def place(self, event: CensusEvent, censuses: Mapping[str, Any]) -> str | None:
        """The unit of an event that names none (a Procedure without location, a scored CT).

        Ventilation joins the unit where the patient is an occupant; a scored CT the first unit
        of its hospital; anything else (and no unit found) the hospital-level ICU (None).
        """
        if event.unit is not None:
            return event.unit
        if event.kind in VENTILATION_KINDS:
            return unit_of_patient(censuses, event.hospital, event.patient_pseudonym)
        if event.kind is CensusChangeValues.PIPELINE_RISK:
            return self.registry.admitting_unit(event.hospital)
        return None

    def forecast(
        self,
        hospital: str,
        unit: str | None,
        census: Mapping[str, Any],
        now: datetime | None = None,
    ) -> UnitForecast:
        """The unit's forecast from its census, with its registered beds and ventilators."""
        return forecast_from_census(
            hospital,
            census,
            self.registry.beds(hospital, unit),
            days=self.days,
            breach_probability=self.breach_probability,
            unit=unit,
            now=now,
            ventilators=self.registry.ventilators(hospital, unit),
            icu_stay=self.icu_stay,
            ventilation=self.ventilation,
        )

    def on_event(self, event: CensusEvent, censuses: Mapping[str, Any]) -> CensusUpdate:
        """Place one event, apply it to its unit's census, forecast that unit: one call.

        ``censuses``: every unit's census by key (``hospital`` or ``hospital/unit``).
        """
        unit = self.place(event, censuses)
        placed = CensusEvent(
            event.kind, event.hospital, event.patient_pseudonym, event.event_time,
            event.probability, unit,
        )  # fmt: skip
        key = census_key(placed)
        census = apply_event(censuses.get(key) or {}, placed)
        forecast = self.forecast(event.hospital, unit, census)
        return CensusUpdate(key, {**census, "hospital": event.hospital, "unit": unit}, forecast)

    def refresh(self, census: Mapping[str, Any] | None, wall: datetime) -> UnitForecast | None:
        """The forecast of a live unit at the wall-clock time; None for a replayed one.

        A live unit's clinical clock is within a day of the wall clock: its forecast must move
        on as time passes without census changes.
        """
        if not census or not is_live(census, wall):
            return None
        return self.forecast(census["hospital"], census.get("unit"), census, wall)
