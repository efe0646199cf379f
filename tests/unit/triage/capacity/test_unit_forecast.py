"""One ICU unit's forecast from its census, and the capacity agent's core (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triage.capacity.locations import UnitCapacity
from triage.capacity.registry import CapacityRegistry
from triage.capacity.unit_census import CensusEvent
from triage.capacity.unit_forecast import CapacityPlanner, forecast_from_census
from triage.fhir.icu import CensusChangeValues as Kind

pytestmark = pytest.mark.unit

CLOCK = datetime(2020, 11, 20, 8, tzinfo=UTC)


def test_forecast_counts_occupants_and_pipeline() -> None:
    census = {
        "occupants": {"x": "2020-11-01T00:00:00+00:00", "y": "2020-11-02T00:00:00+00:00"},
        "pipeline": {"z": [0.9, "2020-11-02T06:00:00+00:00"]},
        "clock": "2020-11-02T08:00:00+00:00",
    }
    forecast = forecast_from_census("h", census, capacity=2)
    assert forecast.beds.in_use_now == 2 and forecast.pipeline_patients == 1
    days = forecast.beds.forecast.days
    assert len(days) == 7
    assert 0 < days[0].expected <= 3
    assert all(0.0 <= d.p_exceed <= 1.0 for d in days)
    assert all(d.lower80 <= d.expected <= d.upper80 for d in days)
    assert forecast.ventilators is None  # no ventilator count given


def test_breach_alert_with_arrivals_and_95_intervals() -> None:
    occupants = {f"o{i}": (CLOCK - timedelta(days=i % 4)).isoformat() for i in range(10)}
    admissions = {(CLOCK - timedelta(days=k)).date().isoformat(): 3 for k in range(1, 15)}
    census = {"occupants": occupants, "pipeline": {}, "admissions": admissions,
              "clock": CLOCK.isoformat()}  # fmt: skip
    full = forecast_from_census("h", census, capacity=10, breach_probability=0.5)
    assert full.beds.breach_alert and full.beds.p_breach >= 0.5
    assert full.beds.expected_arrivals == pytest.approx(21.0, rel=0.05)
    assert all(d.lower95 <= d.lower80 <= d.upper80 <= d.upper95 for d in full.beds.forecast.days)
    roomy = forecast_from_census("h", census, capacity=60, breach_probability=0.5)
    assert not roomy.beds.breach_alert
    quiet = forecast_from_census("h", {**census, "admissions": {}}, capacity=10)
    assert quiet.beds.expected_arrivals == 0.0
    assert quiet.beds.forecast.days[-1].expected < full.beds.forecast.days[-1].expected


def _ventilator_census() -> dict[str, object]:
    return {
        "occupants": {f"o{i}": (CLOCK - timedelta(days=i % 5)).isoformat() for i in range(8)},
        "pipeline": {},
        "ventilated": {f"o{i}": (CLOCK - timedelta(days=i % 3)).isoformat() for i in range(5)},
        "at_risk": {"o7": [0.9, CLOCK.isoformat()], "o6": [0.9, CLOCK.isoformat()]},
        "ventilation_starts": {
            (CLOCK - timedelta(days=k)).date().isoformat(): 1 for k in range(1, 15)
        },
        "clock": CLOCK.isoformat(),
    }


def test_ventilator_forecast_next_to_icu_beds() -> None:
    census = _ventilator_census()
    forecast = forecast_from_census("h", census, capacity=10, ventilators=5, breach_probability=0.5)
    vent = forecast.ventilators
    assert vent is not None and vent.capacity == 5 and vent.in_use_now == 5
    assert len(vent.forecast.days) == len(forecast.beds.forecast.days) == 7
    assert all(
        d.lower95 <= d.lower80 <= d.median <= d.upper80 <= d.upper95 for d in vent.forecast.days
    )
    # five ventilated, two at 90% risk and daily starts: a full unit of 5 is likely breached
    assert vent.breach_alert and vent.p_breach >= 0.5
    assert vent.expected_arrivals > 0
    roomy = forecast_from_census("h", census, capacity=10, ventilators=30)
    assert roomy.ventilators is not None and not roomy.ventilators.breach_alert
    # the at-risk patients weigh by their ventilation risk
    calm = {**census, "at_risk": {}, "ventilation_starts": {}}
    risky = {**census, "ventilation_starts": {}}
    low = forecast_from_census("h", calm, capacity=10, ventilators=5).ventilators
    high = forecast_from_census("h", risky, capacity=10, ventilators=5).ventilators
    assert low is not None and high is not None
    assert high.forecast.days[2].expected == pytest.approx(
        low.forecast.days[2].expected + 2 * 0.9 * 0.95, abs=0.2
    )


def test_forecast_id_is_deterministic_per_unit_and_clock() -> None:
    census = _ventilator_census()
    a = forecast_from_census("h", census, capacity=10, unit="icu-a")
    assert a.forecast_id == forecast_from_census("h", census, capacity=10, unit="icu-a").forecast_id
    assert a.forecast_id != forecast_from_census("h", census, capacity=10).forecast_id
    assert a.issued_for == CLOCK and a.unit == "icu-a"


REGISTRY = CapacityRegistry(
    units={
        ("h", "icu-b"): UnitCapacity("h", "icu-b", beds=4, ventilators=2),
        ("h", "icu-a"): UnitCapacity("h", "icu-a", beds=6, ventilators=3),
    },
    default_beds={"g": 20},
)


def test_planner_places_scored_patients_and_ventilation_in_their_unit() -> None:
    planner = CapacityPlanner(REGISTRY)
    at = CLOCK.isoformat()
    scored = planner.on_event(CensusEvent(Kind.PIPELINE_RISK, "h", "p", at, 0.8), {})
    assert scored.key == "h/icu-a"  # the first unit of a hospital with units
    assert scored.census["pipeline"] == {"p": [0.8, at]}
    assert scored.census["hospital"] == "h" and scored.census["unit"] == "icu-a"
    assert scored.forecast.beds.capacity == 6 and scored.forecast.ventilators is not None
    assert scored.forecast.ventilators.capacity == 3

    admitted = planner.on_event(CensusEvent(Kind.ICU_ADMISSION, "h", "p", at, unit="icu-b"), {})
    censuses = {admitted.key: admitted.census}
    assert admitted.key == "h/icu-b" and admitted.forecast.beds.in_use_now == 1
    # a ventilation Procedure without location joins the unit holding the patient
    started = planner.on_event(CensusEvent(Kind.VENTILATION_START, "h", "p", at), censuses)
    assert started.key == "h/icu-b" and started.census["ventilated"] == {"p": at}
    assert started.census["occupants"] == {"p": at}  # the unit's census carried on
    # a hospital without units: its hospital-level ICU with the hospital's beds
    elsewhere = planner.on_event(CensusEvent(Kind.ICU_ADMISSION, "g", "q", at), {})
    assert elsewhere.key == "g" and elsewhere.forecast.beds.capacity == 20


def test_planner_refreshes_only_live_units() -> None:
    planner = CapacityPlanner(REGISTRY, days=3)
    wall = datetime.now(UTC)
    live = planner.on_event(
        CensusEvent(Kind.ICU_ADMISSION, "h", "p", (wall - timedelta(hours=2)).isoformat()), {}
    )
    replayed = planner.on_event(CensusEvent(Kind.ICU_ADMISSION, "h", "p", CLOCK.isoformat()), {})
    refreshed = planner.refresh(live.census, wall)
    assert refreshed is not None and refreshed.issued_for == wall
    assert len(refreshed.beds.forecast.days) == 3
    assert planner.refresh(replayed.census, wall) is None
    assert planner.refresh(None, wall) is None
