"""The demo's forecast tables: beds and ventilators, labelled, with their bounds."""

from __future__ import annotations

import pytest
from rich.console import Console

from streams.records import CapacityForecast, ForecastDay, VentilatorForecast
from streams.screen import forecast_table, ventilator_table

pytestmark = pytest.mark.unit


def _day(date: str, expected: float, median: float, p: float) -> ForecastDay:
    return ForecastDay(
        date=date,
        expected=expected,
        median=median,
        lower80=expected - 1,
        upper80=expected + 2,
        lower95=expected - 2,
        upper95=expected + 4,
        p_exceed=p,
    )


def _forecast(ventilators: VentilatorForecast | None) -> CapacityForecast:
    return CapacityForecast(
        forecast_id="f-1",
        hospital="demo-hospital",
        issued_for="2020-11-02T08:00:00+00:00",
        issued_at=0.0,
        capacity=12,
        occupancy_now=6,
        pipeline_patients=2,
        days=[_day("2020-11-03", 7.0, 7.0, 0.01)],
        ventilators=ventilators,
    )


def _text(table: object) -> str:
    console = Console(record=True, width=200, color_system=None)
    console.print(table)
    return console.export_text()


def test_ventilator_table_shows_capacity_in_use_bounds_and_breach() -> None:
    vents = VentilatorForecast(
        capacity=4,
        in_use_now=3,
        days=[_day("2020-11-03", 3.4, 3.0, 0.35), _day("2020-11-04", 3.9, 4.0, 0.41)],
        p_breach=0.52,
        breach_alert=True,
    )
    table = ventilator_table(_forecast(vents))
    assert table is not None
    text = _text(table)
    assert "Ventilators in use forecast, demo-hospital" in text
    assert "capacity 4 ventilators; 3 in use now" in text
    assert "BREACH ALERT (ventilators)" in text and "52%" in text
    for column in ("median", "80% interval", "95% interval", "P(over capacity)"):
        assert column in text
    assert "2020-11-04" in text and "3.9" in text and "3-6" in text and "2-8" in text


def test_beds_table_unchanged_and_no_ventilator_table_without_ventilators() -> None:
    forecast = _forecast(None)
    assert ventilator_table(forecast) is None
    text = _text(forecast_table(forecast))
    assert "ICU occupancy forecast, demo-hospital (capacity 12 beds; 6 in ICU now" in text
    assert "BREACH ALERT" not in text
