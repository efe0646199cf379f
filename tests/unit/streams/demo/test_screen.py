"""What the demo screen shows: forecast tables (beds, ventilators) and the ED alert line."""

from __future__ import annotations

import pytest
from rich.console import Console

from streams.demo.screen import alert_line, forecast_table, ventilator_table
from streams.records import (
    Alert,
    BurdenChange,
    Contribution,
    ForecastDay,
    UnitForecastRecord,
    VentilatorForecast,
)

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


def _forecast(ventilators: VentilatorForecast | None) -> UnitForecastRecord:
    return UnitForecastRecord(
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


def _alert(**extra: object) -> Alert:
    return Alert(
        alert_id="a-1",
        risk_id="r-1",
        study_uid="1.2.3",
        patient_pseudonym="k1-abc",
        probability=0.42,
        level="high",
        model_version="m1",
        threshold_version="t1",
        lesion_percent=23.4,
        top_features=[Contribution(feature="age", value=71, contribution=0.3, direction="raises")],
        completeness="complete",
        ct_time="2020-11-02T08:00:00+00:00",
        hospital="demo-hospital",
        raised_at=0.0,
        **extra,
    )


def test_alert_line_shows_severity_score_and_sides_when_measured() -> None:
    line = alert_line(_alert(ct_severity_score=14.0, bilateral=True))
    assert "lesions 23.4% of lung (CT severity 14/30, bilateral)" in line
    assert "one lung" in alert_line(_alert(ct_severity_score=3.0, bilateral=False))


def test_alert_line_without_regional_biomarkers_claims_none() -> None:
    line = alert_line(_alert())
    assert "lesions 23.4% of lung  because age=71↑" in line
    assert "severity" not in line


PRIOR = BurdenChange(
    since_study_uid="1.2.2", since_time="2020-10-30T08:00:00+00:00", interval_days=3.0,
    lesion_from_percent=12.0, lesion_points=19.0, lesion_points_per_day=19.0 / 3,
)  # fmt: skip


def test_alert_line_shows_the_change_since_the_prior_ct_and_the_category() -> None:
    line = alert_line(_alert(change_since_prior=PRIOR, rsna_category="typical"))
    assert "[RSNA typical; was 12 % on 2020-10-30, now 23 % (+19 in 3 days)]" in line
    assert _alert().change_text() == ""


def test_worsening_line_names_the_rule_and_secondary_worsening() -> None:
    line = alert_line(
        _alert(kind="worsening", worsening_since=PRIOR,
               worsening_rule="worsening-10pp-5cts-7d", secondary_worsening=True)
    )  # fmt: skip
    assert line.startswith("[bold magenta]WORSENING after a mild first CT[/]")
    assert "was 12 % on 2020-10-30, now 23 % (+19 in 3 days)" in line
    assert "worsening-10pp-5cts-7d" in line
