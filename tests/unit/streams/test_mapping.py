"""Records to and from the cores' types: every field lands where the other side reads it."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta

import pytest
from paths import RISK_MODELS

from inference.biomarkers import Biomarkers
from inference.client import StudyResult
from streams.mapping import (
    alert_record,
    capacity_event,
    census_event,
    findings,
    forecast_record,
    pipeline_risk_event,
    quantification_record,
    recent_entry,
    recent_study,
    risk_record,
    timeline_point,
    worsening_alert_record,
)
from streams.records import Alert, CtStudy, Quantification, StageTimings, UnitForecastRecord
from triage.alerts.policy import AlertPolicy, RiskLevelValues
from triage.capacity.unit_forecast import forecast_from_census
from triage.fhir.features import IMAGING_FEATURES
from triage.fhir.icu import CensusChange, CensusChangeValues
from triage.risk.assess import score_study
from triage.risk.model import RiskModel
from triage.timeline import follow_up

pytestmark = pytest.mark.unit

CT = datetime(2020, 11, 2, 8, tzinfo=UTC)
QUANTIFICATION = Quantification(
    study_uid="1.2.3",
    patient_pseudonym="p1",
    biomarkers=dict.fromkeys(IMAGING_FEATURES, 10.0),
    regional={"ct_severity_score": 12.0, "bilateral": 1.0},
    lesion_model="lesion_unet",
    lesion_model_version="1",
    ct_time=CT.isoformat(),
    published_at=100.0,
    hospital="h1",
    timings=StageTimings(load_s=1.0, inference_s=2.0),
)
ALERTING = AlertPolicy(
    {RiskLevelValues.MODERATE: 1e-9, RiskLevelValues.HIGH: 2e-9, RiskLevelValues.CRITICAL: 3e-9},
    "t-low",
)


@pytest.fixture(scope="module")
def model() -> RiskModel:
    return RiskModel.load(RISK_MODELS / "ventilation.ubj")


def test_risk_and_alert_records_of_a_scored_study(model: RiskModel) -> None:
    outcome = score_study(findings(QUANTIFICATION), None, model, ALERTING, 72.0, {})
    risk = risk_record(QUANTIFICATION, outcome.risk, scored_at=103.5, scoring_s=0.5, revision=2)
    assert (risk.risk_id, risk.level, risk.revision) == (outcome.risk.risk_id, "critical", 2)
    assert risk.timings == StageTimings(load_s=1.0, inference_s=2.0, scoring_s=0.5)
    assert risk.latency_s == 3.5 and risk.ct_severity_score == 12.0 and risk.bilateral is True
    assert [c.feature for c in risk.top_features] == [c.feature for c in outcome.risk.top_features]
    alert = alert_record(risk, outcome)
    assert outcome.alert is not None and alert.alert_id == outcome.alert.alert_id
    assert (alert.kind, alert.escalated_from, alert.level_threshold) == ("initial", None, 3e-9)
    assert alert.raised_at == risk.scored_at and alert.lesion_percent == 10.0
    assert alert.revision == 2 and alert.bilateral is True
    quiet = score_study(findings(QUANTIFICATION), None, model, ALERTING, 72.0,
                        {outcome.alert_key: outcome.alert_memo(1.0)})  # fmt: skip
    with pytest.raises(ValueError, match="raises no alert"):
        alert_record(risk, quiet)


def test_recent_studies_survive_the_table_round_trip(model: RiskModel) -> None:
    outcome = score_study(findings(QUANTIFICATION), None, model, ALERTING, 72.0, {})
    entry = recent_entry(QUANTIFICATION, outcome.risk, revision=1)
    quantification, study = recent_study(entry)
    assert quantification == QUANTIFICATION and study.findings == findings(QUANTIFICATION)
    assert (study.features_digest, study.revision) == (outcome.risk.features_digest, 1)


def test_census_changes_become_capacity_events_and_back() -> None:
    change = CensusChange(CensusChangeValues.VENTILATION_START, CT, unit="icu-a")
    record = capacity_event(change, "h1", "p1")
    assert record.kind is CensusChangeValues.VENTILATION_START and record.unit == "icu-a"
    assert record.event_time == CT.isoformat()
    event = census_event(record)
    assert (event.kind, event.hospital, event.patient_pseudonym, event.unit) == (
        CensusChangeValues.VENTILATION_START, "h1", "p1", "icu-a",
    )  # fmt: skip
    wire = record.to_bytes()
    assert b'"kind":"ventilation_start"' in wire  # the wire format the kinds always had


def test_a_scored_study_joins_the_capacity_pipeline(model: RiskModel) -> None:
    outcome = score_study(findings(QUANTIFICATION), None, model, ALERTING, 72.0, {})
    risk = risk_record(QUANTIFICATION, outcome.risk, scored_at=101.0, scoring_s=0.1)
    event = census_event(pipeline_risk_event(risk))
    assert event.kind is CensusChangeValues.PIPELINE_RISK and event.unit is None
    assert event.probability == risk.probability and event.event_time == risk.ct_time


def test_forecast_record_of_a_unit_forecast() -> None:
    census = {
        "occupants": {"x": (CT - timedelta(days=2)).isoformat()},
        "pipeline": {"z": [0.9, CT.isoformat()]},
        "ventilated": {"x": (CT - timedelta(days=1)).isoformat()},
        "clock": CT.isoformat(),
    }
    unit = forecast_from_census("h1", census, 4, unit="icu-a", ventilators=2)
    record = forecast_record(unit, issued_at=42.0)
    assert UnitForecastRecord.model_validate_json(record.to_bytes()) == record
    assert (record.forecast_id, record.hospital, record.unit) == (unit.forecast_id, "h1", "icu-a")
    assert record.issued_for == CT.isoformat() and record.issued_at == 42.0
    assert (record.capacity, record.occupancy_now, record.pipeline_patients) == (4, 1, 1)
    assert record.p_breach == unit.beds.p_breach and record.breach_alert == unit.beds.breach_alert
    first = unit.beds.forecast.days[0]
    assert record.days[0].date == first.date.isoformat()
    assert record.days[0].upper95 == first.upper95 and len(record.days) == 7
    assert record.ventilators is not None and unit.ventilators is not None
    assert (record.ventilators.capacity, record.ventilators.in_use_now) == (2, 1)
    assert record.ventilators.expected_arrivals == unit.ventilators.expected_arrivals
    bare = forecast_record(forecast_from_census("h1", census, 4), issued_at=42.0)
    assert bare.ventilators is None and bare.unit is None


def test_quantification_record_of_a_study_result() -> None:
    study = CtStudy(
        event_id="e1", study_uid="1.2.3", patient_pseudonym="p1", study_uri="file:///s/1.2.3",
        source="test", ct_time=CT.isoformat(), published_at=100.0, hospital="h1",
    )  # fmt: skip
    biomarkers = Biomarkers(**{f.name: 2.0 for f in fields(Biomarkers)})
    timings = StageTimings(load_s=1.0, inference_s=2.0)
    record = quantification_record(
        study, StudyResult(biomarkers, None), "lesion_threshold", "1", timings
    )
    assert record.biomarkers == biomarkers.as_dict() and record.regional == {}
    assert (record.study_uid, record.ct_time, record.study_uri) == (
        "1.2.3", CT.isoformat(), "file:///s/1.2.3",
    )  # fmt: skip
    assert (record.lesion_model, record.masks_uri) == ("lesion_threshold", "")
    assert record.timings == timings
    # lesions 2 % of lung, no zones measured: the category degrades to indeterminate
    assert record.rsna_category == "indeterminate"
    assert record.rsna_findings["distribution_measured"] == 0.0


def test_follow_up_changes_ride_on_the_risk_and_alert_records(model: RiskModel) -> None:
    prior = QUANTIFICATION.model_copy(
        update={"study_uid": "1.2.2", "ct_time": (CT - timedelta(days=3)).isoformat(),
                "biomarkers": {**QUANTIFICATION.biomarkers, "lesion_percent": 2.0},
                "regional": {"ct_severity_score": 4.0, "bilateral": 0.0}}
    )  # fmt: skip
    first = follow_up([], timeline_point(prior))
    later = follow_up([p.to_dict() for p in first.points], timeline_point(QUANTIFICATION))
    outcome = score_study(findings(QUANTIFICATION), None, model, ALERTING, 72.0, {})
    risk = risk_record(QUANTIFICATION, outcome.risk, 130.0, 0.5, follow=later)
    change = risk.change_since_prior
    assert change is not None and risk.change_since_first == change
    assert (change.since_study_uid, change.interval_days) == ("1.2.2", pytest.approx(3.0))
    assert change.lesion_points == pytest.approx(8.0)
    assert change.severity_points == pytest.approx(8.0)
    assert alert_record(risk, outcome).change_since_prior == change
    assert later.worsening is not None  # +8 severity points in 3 days
    worsening = worsening_alert_record(risk, later.worsening)
    assert (
        worsening.kind == "worsening" and worsening.alert_id != alert_record(risk, outcome).alert_id
    )
    assert worsening.worsening_reasons == ["severity_rise"]
    assert worsening.secondary_worsening  # the first CT was 2 % of lung
    assert Alert.model_validate_json(worsening.to_bytes()) == worsening
