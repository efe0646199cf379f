"""Census bookkeeping of the capacity agent (pure)."""

from __future__ import annotations

import pytest

from streams.agents.capacity import apply_event, forecast_from_census
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
