"""Census bookkeeping of the capacity agent (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streams.agents.capacity import (
    apply_event,
    census_key,
    forecast_from_census,
    is_live,
    publish_capacity_gauges,
    unit_of_patient,
)
from streams.metrics import REGISTRY
from streams.records import CapacityEvent, CapacityEventKind

pytestmark = pytest.mark.unit


def _event(kind: CapacityEventKind, patient: str, at: str, p: float | None = None) -> CapacityEvent:
    return CapacityEvent(
        kind=kind, hospital="h", patient_pseudonym=patient, event_time=at, probability=p
    )


def test_admission_moves_a_pipeline_patient_into_the_icu() -> None:
    census = apply_event(
        {}, _event(CapacityEventKind.PIPELINE_RISK, "a", "2020-11-02T08:00:00+00:00", 0.7)
    )
    assert census["pipeline"] == {"a": [0.7, "2020-11-02T08:00:00+00:00"]}
    census = apply_event(
        census, _event(CapacityEventKind.ICU_ADMISSION, "a", "2020-11-02T12:00:00+00:00")
    )
    assert census["pipeline"] == {}
    assert census["occupants"] == {"a": "2020-11-02T12:00:00+00:00"}
    census = apply_event(
        census, _event(CapacityEventKind.ICU_DISCHARGE, "a", "2020-11-09T12:00:00+00:00")
    )
    assert census["occupants"] == {}
    assert census["clock"] == "2020-11-09T12:00:00+00:00"


def test_clock_never_goes_back_and_stale_pipeline_patients_expire() -> None:
    census = apply_event(
        {}, _event(CapacityEventKind.PIPELINE_RISK, "a", "2020-11-01T00:00:00+00:00", 0.5)
    )
    census = apply_event(
        census, _event(CapacityEventKind.PIPELINE_RISK, "b", "2020-11-20T00:00:00+00:00", 0.5)
    )
    assert set(census["pipeline"]) == {"b"}  # a was scored more than 14 days before the clock
    census = apply_event(
        census, _event(CapacityEventKind.PIPELINE_RISK, "c", "2020-11-19T00:00:00+00:00", 0.5)
    )
    assert census["clock"] == "2020-11-20T00:00:00+00:00"


def test_forecast_counts_occupants_and_pipeline() -> None:
    census = {
        "occupants": {"x": "2020-11-01T00:00:00+00:00", "y": "2020-11-02T00:00:00+00:00"},
        "pipeline": {"z": [0.9, "2020-11-02T06:00:00+00:00"]},
        "clock": "2020-11-02T08:00:00+00:00",
    }
    forecast = forecast_from_census("h", census, capacity=2)
    assert forecast.occupancy_now == 2 and forecast.pipeline_patients == 1
    assert len(forecast.days) == 7
    assert 0 < forecast.days[0].expected <= 3
    assert all(0.0 <= d.p_exceed <= 1.0 for d in forecast.days)
    assert all(d.lower80 <= d.expected <= d.upper80 for d in forecast.days)


def test_admissions_are_counted_per_day_once_per_patient() -> None:
    census: dict[str, object] = {}
    for patient, at in [
        ("a", "2020-11-02T08:00:00+00:00"),
        ("b", "2020-11-02T20:00:00+00:00"),
        ("a", "2020-11-02T21:00:00+00:00"),
        ("c", "2020-11-03T01:00:00+00:00"),
    ]:
        census = apply_event(census, _event(CapacityEventKind.ICU_ADMISSION, patient, at))
    assert census["admissions"] == {"2020-11-02": 2, "2020-11-03": 1}


def test_unit_events_get_their_own_census() -> None:
    event = CapacityEvent(
        kind=CapacityEventKind.ICU_ADMISSION,
        hospital="h",
        unit="icu-2",
        patient_pseudonym="a",
        event_time="2020-11-02T08:00:00+00:00",
    )
    assert census_key(event) == "h/icu-2"
    assert census_key(_event(CapacityEventKind.ICU_ADMISSION, "a", event.event_time)) == "h"


def test_breach_alert_with_arrivals_and_95_intervals() -> None:
    clock = datetime(2020, 11, 20, 8, tzinfo=UTC)
    occupants = {f"o{i}": (clock - timedelta(days=i % 4)).isoformat() for i in range(10)}
    admissions = {(clock - timedelta(days=k)).date().isoformat(): 3 for k in range(1, 15)}
    census = {"occupants": occupants, "pipeline": {}, "admissions": admissions,
              "clock": clock.isoformat()}  # fmt: skip
    full = forecast_from_census("h", census, capacity=10, breach_probability=0.5)
    assert full.breach_alert and full.p_breach is not None and full.p_breach >= 0.5
    assert full.expected_arrivals == pytest.approx(21.0, rel=0.05)
    assert all(d.lower95 <= d.lower80 <= d.upper80 <= d.upper95 for d in full.days)  # type: ignore[operator]
    roomy = forecast_from_census("h", census, capacity=60, breach_probability=0.5)
    assert not roomy.breach_alert
    quiet = forecast_from_census("h", {**census, "admissions": {}}, capacity=10)
    assert quiet.expected_arrivals == 0.0
    assert quiet.days[-1].expected < full.days[-1].expected


def test_only_live_census_is_refreshed_on_schedule() -> None:
    wall = datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert is_live({"clock": (wall - timedelta(hours=3)).isoformat()}, wall)
    assert not is_live({"clock": "2020-11-02T08:00:00+00:00"}, wall)


def test_ventilation_census_and_at_risk_patients() -> None:
    t0 = "2020-11-02T08:00:00+00:00"
    census = apply_event({}, _event(CapacityEventKind.PIPELINE_RISK, "a", t0, 0.8))
    census = apply_event(census, _event(CapacityEventKind.ICU_ADMISSION, "a", t0))
    # in the ICU, so out of the ICU pipeline, but still at risk of ventilation
    assert census["pipeline"] == {} and census["at_risk"] == {"a": [0.8, t0]}
    census = apply_event(
        census, _event(CapacityEventKind.VENTILATION_START, "a", "2020-11-03T01:00:00+00:00")
    )
    assert census["ventilated"] == {"a": "2020-11-03T01:00:00+00:00"}
    assert census["at_risk"] == {} and census["ventilation_starts"] == {"2020-11-03": 1}
    # a redelivered start counts once; an end frees the ventilator, the bed stays taken
    census = apply_event(
        census, _event(CapacityEventKind.VENTILATION_START, "a", "2020-11-03T01:00:00+00:00")
    )
    assert census["ventilation_starts"] == {"2020-11-03": 1}
    census = apply_event(
        census, _event(CapacityEventKind.VENTILATION_END, "a", "2020-11-08T01:00:00+00:00")
    )
    assert census["ventilated"] == {} and set(census["occupants"]) == {"a"}
    census = apply_event(
        census, _event(CapacityEventKind.VENTILATION_START, "b", "2020-11-08T02:00:00+00:00")
    )
    census = apply_event(
        census, _event(CapacityEventKind.ICU_DISCHARGE, "b", "2020-11-09T02:00:00+00:00")
    )
    assert census["ventilated"] == {}  # leaving the ICU ends a ventilation we were not told of


def test_ventilator_forecast_next_to_icu_beds() -> None:
    clock = datetime(2020, 11, 20, 8, tzinfo=UTC)
    census = {
        "occupants": {f"o{i}": (clock - timedelta(days=i % 5)).isoformat() for i in range(8)},
        "pipeline": {},
        "ventilated": {f"o{i}": (clock - timedelta(days=i % 3)).isoformat() for i in range(5)},
        "at_risk": {"o7": [0.9, clock.isoformat()], "o6": [0.9, clock.isoformat()]},
        "ventilation_starts": {
            (clock - timedelta(days=k)).date().isoformat(): 1 for k in range(1, 15)
        },
        "clock": clock.isoformat(),
    }
    forecast = forecast_from_census("h", census, capacity=10, ventilators=5, breach_probability=0.5)
    vent = forecast.ventilators
    assert vent is not None and vent.capacity == 5 and vent.in_use_now == 5
    assert len(vent.days) == len(forecast.days) == 7
    assert all(
        d.lower95 <= d.lower80 <= d.median <= d.upper80 <= d.upper95  # type: ignore[operator]
        for d in vent.days
    )
    # five ventilated, two at 90% risk and daily starts: a full unit of 5 is likely breached
    assert vent.breach_alert and vent.p_breach is not None and vent.p_breach >= 0.5
    assert vent.expected_arrivals is not None and vent.expected_arrivals > 0
    roomy = forecast_from_census("h", census, capacity=10, ventilators=30)
    assert roomy.ventilators is not None and not roomy.ventilators.breach_alert

    # what Prometheus scrapes (the CtriageCapacityBreachRisk rule reads the breach gauge)
    publish_capacity_gauges(forecast.model_copy(update={"hospital": "gauge-h", "unit": "icu-1"}))
    labels = {"hospital": "gauge-h", "unit": "icu-1"}
    breach = "ctriage_capacity_breach_probability"
    assert REGISTRY.get_sample_value(breach, {**labels, "resource": "ventilators"}) == vent.p_breach
    assert (
        REGISTRY.get_sample_value(breach, {**labels, "resource": "icu_beds"}) == forecast.p_breach
    )
    in_use = REGISTRY.get_sample_value(
        "ctriage_capacity_in_use", {**labels, "resource": "ventilators"}
    )
    assert in_use == 5
    # the at-risk patients weigh by their ventilation risk
    calm = {**census, "at_risk": {}, "ventilation_starts": {}}
    risky = {**census, "ventilation_starts": {}}
    low = forecast_from_census("h", calm, capacity=10, ventilators=5).ventilators
    high = forecast_from_census("h", risky, capacity=10, ventilators=5).ventilators
    assert low is not None and high is not None
    assert high.days[2].expected == pytest.approx(low.days[2].expected + 2 * 0.9 * 0.95, abs=0.2)
    assert forecast_from_census("h", census, capacity=10).ventilators is None


def test_ventilation_without_location_goes_to_the_unit_holding_the_patient() -> None:
    censuses = {
        "h/icu-a": {"hospital": "h", "unit": "icu-a", "occupants": {"x": "t"}},
        "h/icu-b": {"hospital": "h", "unit": "icu-b", "occupants": {"y": "t"}},
        "g/icu-b": {"hospital": "g", "unit": "icu-b", "occupants": {"x": "t"}},
    }
    assert unit_of_patient(censuses, "h", "x") == "icu-a"
    assert unit_of_patient(censuses, "g", "x") == "icu-b"
    assert unit_of_patient(censuses, "h", "z") is None
