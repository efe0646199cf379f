"""Census bookkeeping of the capacity agent (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streams.agents.capacity import apply_event, census_key, forecast_from_census, is_live
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
