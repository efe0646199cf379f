"""What the capacity agent emits besides the record: Prometheus gauges and breach warnings."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from streams.agents.capacity import log_breach_alerts, publish_capacity_gauges
from streams.mapping import forecast_record
from streams.metrics import REGISTRY
from triage.capacity.unit_forecast import forecast_from_census

pytestmark = pytest.mark.unit

CLOCK = datetime(2020, 11, 20, 8, tzinfo=UTC)
CENSUS = {
    "occupants": {f"o{i}": (CLOCK - timedelta(days=i % 5)).isoformat() for i in range(8)},
    "pipeline": {},
    "ventilated": {f"o{i}": (CLOCK - timedelta(days=i % 3)).isoformat() for i in range(5)},
    "at_risk": {"o7": [0.9, CLOCK.isoformat()]},
    "clock": CLOCK.isoformat(),
}


def test_gauges_carry_breach_probability_and_use_per_resource() -> None:
    unit = forecast_from_census("gauge-h", CENSUS, 10, unit="icu-1", ventilators=5)
    record = forecast_record(unit, issued_at=0.0)
    publish_capacity_gauges(record)
    labels = {"hospital": "gauge-h", "unit": "icu-1"}
    breach = "ctriage_capacity_breach_probability"
    assert unit.ventilators is not None
    vents = {**labels, "resource": "ventilators"}
    assert REGISTRY.get_sample_value(breach, vents) == unit.ventilators.p_breach
    beds = {**labels, "resource": "icu_beds"}
    assert REGISTRY.get_sample_value(breach, beds) == unit.beds.p_breach
    assert REGISTRY.get_sample_value("ctriage_capacity_in_use", vents) == 5
    assert REGISTRY.get_sample_value("ctriage_capacity_in_use", beds) == 8


def test_breach_alerts_are_logged_per_resource(caplog: pytest.LogCaptureFixture) -> None:
    full = forecast_from_census("h", CENSUS, 6, ventilators=4, breach_probability=0.5)
    with caplog.at_level(logging.WARNING, logger="streams.agents.capacity"):
        log_breach_alerts(forecast_record(full, issued_at=0.0), days=7)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("ICU capacity breach alert h: P(> 6 beds") for m in messages)
    assert any(m.startswith("ventilator breach alert h: P(> 4 ventilators") for m in messages)
    caplog.clear()
    roomy = forecast_from_census("h", CENSUS, 60, ventilators=40, breach_probability=0.5)
    log_breach_alerts(forecast_record(roomy, issued_at=0.0), days=7)
    assert not caplog.records
