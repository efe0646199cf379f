"""The census of one ICU unit, one event at a time (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triage.capacity.unit_census import (
    CensusEvent,
    apply_event,
    census_key,
    is_live,
    unit_of_patient,
)
from triage.fhir.icu import CensusChangeValues as Kind

pytestmark = pytest.mark.unit


def _event(kind: Kind, patient: str, at: str, p: float | None = None) -> CensusEvent:
    return CensusEvent(kind, hospital="h", patient_pseudonym=patient, event_time=at, probability=p)


def test_admission_moves_a_pipeline_patient_into_the_icu() -> None:
    census = apply_event({}, _event(Kind.PIPELINE_RISK, "a", "2020-11-02T08:00:00+00:00", 0.7))
    assert census["pipeline"] == {"a": [0.7, "2020-11-02T08:00:00+00:00"]}
    census = apply_event(census, _event(Kind.ICU_ADMISSION, "a", "2020-11-02T12:00:00+00:00"))
    assert census["pipeline"] == {}
    assert census["occupants"] == {"a": "2020-11-02T12:00:00+00:00"}
    census = apply_event(census, _event(Kind.ICU_DISCHARGE, "a", "2020-11-09T12:00:00+00:00"))
    assert census["occupants"] == {}
    assert census["clock"] == "2020-11-09T12:00:00+00:00"


def test_clock_never_goes_back_and_stale_pipeline_patients_expire() -> None:
    census = apply_event({}, _event(Kind.PIPELINE_RISK, "a", "2020-11-01T00:00:00+00:00", 0.5))
    census = apply_event(census, _event(Kind.PIPELINE_RISK, "b", "2020-11-20T00:00:00+00:00", 0.5))
    assert set(census["pipeline"]) == {"b"}  # a was scored more than 14 days before the clock
    census = apply_event(census, _event(Kind.PIPELINE_RISK, "c", "2020-11-19T00:00:00+00:00", 0.5))
    assert census["clock"] == "2020-11-20T00:00:00+00:00"


def test_admissions_are_counted_per_day_once_per_patient() -> None:
    census: dict[str, object] = {}
    for patient, at in [
        ("a", "2020-11-02T08:00:00+00:00"),
        ("b", "2020-11-02T20:00:00+00:00"),
        ("a", "2020-11-02T21:00:00+00:00"),
        ("c", "2020-11-03T01:00:00+00:00"),
    ]:
        census = apply_event(census, _event(Kind.ICU_ADMISSION, patient, at))
    assert census["admissions"] == {"2020-11-02": 2, "2020-11-03": 1}


def test_unit_events_get_their_own_census() -> None:
    event = CensusEvent(Kind.ICU_ADMISSION, "h", "a", "2020-11-02T08:00:00+00:00", unit="icu-2")
    assert census_key(event) == "h/icu-2"
    assert census_key(_event(Kind.ICU_ADMISSION, "a", event.event_time)) == "h"


def test_only_live_census_is_refreshed_on_schedule() -> None:
    wall = datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert is_live({"clock": (wall - timedelta(hours=3)).isoformat()}, wall)
    assert not is_live({"clock": "2020-11-02T08:00:00+00:00"}, wall)


def test_ventilation_census_and_at_risk_patients() -> None:
    t0 = "2020-11-02T08:00:00+00:00"
    census = apply_event({}, _event(Kind.PIPELINE_RISK, "a", t0, 0.8))
    census = apply_event(census, _event(Kind.ICU_ADMISSION, "a", t0))
    # in the ICU, so out of the ICU pipeline, but still at risk of ventilation
    assert census["pipeline"] == {} and census["at_risk"] == {"a": [0.8, t0]}
    start = _event(Kind.VENTILATION_START, "a", "2020-11-03T01:00:00+00:00")
    census = apply_event(census, start)
    assert census["ventilated"] == {"a": "2020-11-03T01:00:00+00:00"}
    assert census["at_risk"] == {} and census["ventilation_starts"] == {"2020-11-03": 1}
    # a redelivered start counts once; an end frees the ventilator, the bed stays taken
    census = apply_event(census, start)
    assert census["ventilation_starts"] == {"2020-11-03": 1}
    census = apply_event(census, _event(Kind.VENTILATION_END, "a", "2020-11-08T01:00:00+00:00"))
    assert census["ventilated"] == {} and set(census["occupants"]) == {"a"}
    census = apply_event(census, _event(Kind.VENTILATION_START, "b", "2020-11-08T02:00:00+00:00"))
    census = apply_event(census, _event(Kind.ICU_DISCHARGE, "b", "2020-11-09T02:00:00+00:00"))
    assert census["ventilated"] == {}  # leaving the ICU ends a ventilation we were not told of


def test_ventilation_without_location_goes_to_the_unit_holding_the_patient() -> None:
    censuses = {
        "h/icu-a": {"hospital": "h", "unit": "icu-a", "occupants": {"x": "t"}},
        "h/icu-b": {"hospital": "h", "unit": "icu-b", "occupants": {"y": "t"}},
        "g/icu-b": {"hospital": "g", "unit": "icu-b", "occupants": {"x": "t"}},
    }
    assert unit_of_patient(censuses, "h", "x") == "icu-a"
    assert unit_of_patient(censuses, "g", "x") == "icu-b"
    assert unit_of_patient(censuses, "h", "z") is None
