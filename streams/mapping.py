"""Records (``streams.records``) to and from the libraries' types, in one place.

The cores in ``triage/`` and ``inference/`` take and return their own types (:class:`StudyFindings`,
:class:`StudyOutcome`, :class:`CensusEvent`, :class:`UnitForecast`, ...); the agents carry
records. Every field copied between the two is copied here, once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from inference import rsna_category
from streams.records import (
    Alert,
    BurdenChange,
    CapacityEvent,
    Contribution,
    CtStudy,
    ForecastDay,
    Quantification,
    RiskAssessment,
    StageTimings,
    UnitForecastRecord,
    VentilatorForecast,
)
from triage.alerts import WorseningDecision
from triage.capacity import CapacityForecast as ResourceDays
from triage.capacity import CensusEvent, UnitForecast
from triage.fhir import CensusChange, CensusChangeValues, risk_assessment
from triage.risk import Contribution as ScoreContribution
from triage.risk import RecentStudy, StudyFindings, StudyOutcome, StudyRisk
from triage.timeline import Change, FollowUp, TimelinePoint

if TYPE_CHECKING:  # the Triton client is not needed to map its result
    from inference import StudyResult


def quantification_record(
    study: CtStudy,
    result: StudyResult,
    lesion_model: str,
    lesion_model_version: str,
    timings: StageTimings,
    masks_uri: str = "",
) -> Quantification:
    """The ``ct.quantification`` record of what the lesion model measured on a study."""
    regional = result.regional.as_dict() if result.regional else None
    category = rsna_category(result.biomarkers.as_dict(), regional)
    return Quantification(
        study_uid=study.study_uid,
        patient_pseudonym=study.patient_pseudonym,
        biomarkers=result.biomarkers.as_dict(),
        regional=regional or {},
        lesion_model=lesion_model,
        lesion_model_version=lesion_model_version,
        ct_time=study.ct_time,
        published_at=study.published_at,
        hospital=study.hospital,
        timings=timings,
        study_uri=study.study_uri,
        masks_uri=masks_uri,
        rsna_category=str(category.category),
        rsna_findings=category.deciding,
    )


def timeline_point(quantification: Quantification) -> TimelinePoint:
    """What the patient's timeline keeps of a quantified study."""
    regional = quantification.regional
    return TimelinePoint(
        study_uid=quantification.study_uid,
        ct_time=quantification.ct_time,
        lesion_percent=quantification.biomarkers.get("lesion_percent", 0.0),
        ggo_percent=quantification.biomarkers.get("ggo_percent", 0.0),
        consolidation_percent=quantification.biomarkers.get("consolidation_percent", 0.0),
        ct_severity_score=regional.get("ct_severity_score"),
        bilateral=bool(regional["bilateral"]) if "bilateral" in regional else None,
        model_version=f"{quantification.lesion_model}:{quantification.lesion_model_version}",
        rsna_category=quantification.rsna_category,
        well_aerated_percent=quantification.biomarkers.get("well_aerated_percent"),
        lung_volume_ml=quantification.biomarkers.get("lung_volume_ml"),
    )


def timeline_point_of_risk(risk: RiskAssessment) -> TimelinePoint:
    """A scored study as a timeline point (what ``ctriage patient timeline`` reads back)."""
    regional = risk.regional
    return TimelinePoint(
        study_uid=risk.study_uid,
        ct_time=risk.ct_time,
        lesion_percent=risk.biomarkers.get("lesion_percent", 0.0),
        ggo_percent=risk.biomarkers.get("ggo_percent", 0.0),
        consolidation_percent=risk.biomarkers.get("consolidation_percent", 0.0),
        ct_severity_score=regional.get("ct_severity_score"),
        bilateral=risk.bilateral,
        model_version=risk.model_version,
        rsna_category=risk.rsna_category,
        well_aerated_percent=risk.biomarkers.get("well_aerated_percent"),
        lung_volume_ml=risk.biomarkers.get("lung_volume_ml"),
    )


def burden_change(change: Change | None) -> BurdenChange | None:
    """The record of a timeline change (None stays None)."""
    return None if change is None else BurdenChange(**change.as_dict())


def findings(quantification: Quantification) -> StudyFindings:
    """What the risk core reads of a quantification."""
    return StudyFindings(
        study_uid=quantification.study_uid,
        patient_pseudonym=quantification.patient_pseudonym,
        hospital=quantification.hospital,
        ct_time=quantification.ct_time,
        biomarkers=quantification.biomarkers,
        regional=quantification.regional,
    )


def contribution(c: ScoreContribution) -> Contribution:
    """One feature's share of a score, as a record."""
    return Contribution(
        feature=c.feature, value=c.value, contribution=c.contribution, direction=str(c.direction)
    )


def risk_record(
    quantification: Quantification,
    risk: StudyRisk,
    scored_at: float,
    scoring_s: float,
    revision: int = 0,
    follow: FollowUp | None = None,
) -> RiskAssessment:
    """The ``triage.risk`` record of a scored quantification (``revision`` n: n-th re-score).

    ``follow`` (the study's place in the patient's timeline) adds the burden changes.
    """
    return RiskAssessment(
        risk_id=risk.risk_id,
        study_uid=quantification.study_uid,
        patient_pseudonym=quantification.patient_pseudonym,
        probability=risk.probability,
        level=str(risk.level),
        alert=risk.alert,
        model_version=risk.model_version,
        threshold_version=risk.threshold_version,
        threshold=risk.threshold,
        biomarkers=quantification.biomarkers,
        regional=quantification.regional,
        top_features=[contribution(c) for c in risk.top_features],
        completeness=str(risk.completeness),
        completeness_note=risk.completeness_note,
        ct_time=quantification.ct_time,
        hospital=quantification.hospital,
        published_at=quantification.published_at,
        scored_at=scored_at,
        timings=quantification.timings.model_copy(update={"scoring_s": scoring_s}),
        revision=revision,
        rsna_category=quantification.rsna_category,
        rsna_findings=quantification.rsna_findings,
        change_since_prior=burden_change(follow.since_prior) if follow else None,
        change_since_first=burden_change(follow.since_first) if follow else None,
    )


def alert_record(risk: RiskAssessment, outcome: StudyOutcome) -> Alert:
    """The alert an emergency physician sees for the alert decision of ``outcome``."""
    decision = outcome.alert
    if decision is None:
        raise ValueError(f"study {risk.study_uid}: the outcome raises no alert")
    return Alert(
        alert_id=decision.alert_id,
        risk_id=risk.risk_id,
        study_uid=risk.study_uid,
        patient_pseudonym=risk.patient_pseudonym,
        probability=risk.probability,
        level=risk.level,
        model_version=risk.model_version,
        threshold_version=risk.threshold_version,
        lesion_percent=risk.biomarkers.get("lesion_percent", 0.0),
        top_features=risk.top_features,
        completeness=risk.completeness,
        ct_time=risk.ct_time,
        hospital=risk.hospital,
        raised_at=risk.scored_at,
        kind=str(decision.kind),
        escalated_from=None if decision.previous_level is None else str(decision.previous_level),
        previous_alert_id=decision.previous_alert_id,
        level_threshold=outcome.level_threshold,
        completeness_note=risk.completeness_note,
        revision=risk.revision,
        ct_severity_score=risk.ct_severity_score,
        bilateral=risk.bilateral,
        rsna_category=risk.rsna_category,
        rsna_findings=risk.rsna_findings,
        change_since_prior=risk.change_since_prior,
        change_since_first=risk.change_since_first,
    )


def worsening_alert_record(risk: RiskAssessment, decision: WorseningDecision) -> Alert:
    """The worsening alert of a study: its risk, and the burden change that fired the rule."""
    return Alert(
        alert_id=decision.alert_id,
        risk_id=risk.risk_id,
        study_uid=risk.study_uid,
        patient_pseudonym=risk.patient_pseudonym,
        probability=risk.probability,
        level=risk.level,
        model_version=risk.model_version,
        threshold_version=risk.threshold_version,
        lesion_percent=risk.biomarkers.get("lesion_percent", 0.0),
        top_features=risk.top_features,
        completeness=risk.completeness,
        ct_time=risk.ct_time,
        hospital=risk.hospital,
        raised_at=risk.scored_at,
        kind="worsening",
        completeness_note=risk.completeness_note,
        revision=risk.revision,
        ct_severity_score=risk.ct_severity_score,
        bilateral=risk.bilateral,
        rsna_category=risk.rsna_category,
        rsna_findings=risk.rsna_findings,
        change_since_prior=risk.change_since_prior,
        change_since_first=risk.change_since_first,
        worsening_reasons=[str(r) for r in decision.reasons],
        worsening_rule=decision.rule_version,
        worsening_since=burden_change(decision.change),
        secondary_worsening=decision.secondary,
    )


def fhir_risk_assessment(alert: Alert) -> dict[str, Any]:
    """The alert as a FHIR R4 RiskAssessment (validated), ready to POST to an EHR."""
    return risk_assessment(
        alert_id=alert.alert_id,
        patient_pseudonym=alert.patient_pseudonym,
        study_uid=alert.study_uid,
        probability=alert.probability,
        level=alert.level,
        occurrence=datetime.fromtimestamp(alert.raised_at, tz=UTC).isoformat(),
        model_version=alert.model_version,
        threshold_version=alert.threshold_version,
        top_features=[c.model_dump() for c in alert.top_features],
        completeness=alert.completeness_note or alert.completeness,
        escalated_from=alert.escalated_from,
    )


def recent_entry(quantification: Quantification, risk: StudyRisk, revision: int) -> dict[str, Any]:
    """A scored study as kept in ``patient_to_recent_studies`` (JSON-safe)."""
    return {
        "quantification": quantification.model_dump(mode="json"),
        "digest": risk.features_digest,
        "revision": revision,
    }


def recent_study(entry: dict[str, Any]) -> tuple[Quantification, RecentStudy]:
    """A ``patient_to_recent_studies`` entry back as its record and the core's type."""
    quantification = Quantification.model_validate(entry["quantification"])
    return quantification, RecentStudy(
        findings(quantification), str(entry["digest"]), int(entry["revision"])
    )


def capacity_event(change: CensusChange, hospital: str, patient_pseudonym: str) -> CapacityEvent:
    """The ``capacity.events`` record of a census change read from FHIR."""
    return CapacityEvent(
        kind=change.kind,
        hospital=hospital,
        patient_pseudonym=patient_pseudonym,
        event_time=change.at.isoformat(),
        unit=change.unit,
    )


def pipeline_risk_event(risk: RiskAssessment) -> CapacityEvent:
    """The ``capacity.events`` record of a scored study: a patient who may need the ICU."""
    return CapacityEvent(
        kind=CensusChangeValues.PIPELINE_RISK,
        hospital=risk.hospital,
        patient_pseudonym=risk.patient_pseudonym,
        event_time=risk.ct_time,
        probability=risk.probability,
    )


def census_event(record: CapacityEvent) -> CensusEvent:
    """What the capacity core reads of a ``capacity.events`` record."""
    return CensusEvent(
        kind=record.kind,
        hospital=record.hospital,
        patient_pseudonym=record.patient_pseudonym,
        event_time=record.event_time,
        probability=record.probability,
        unit=record.unit,
    )


def _days(forecast: ResourceDays) -> list[ForecastDay]:
    return [
        ForecastDay(
            date=d.date.isoformat(),
            expected=d.expected,
            lower80=d.lower80,
            upper80=d.upper80,
            p_exceed=d.p_exceed,
            lower95=d.lower95,
            upper95=d.upper95,
            median=d.median,
        )
        for d in forecast.days
    ]


def forecast_record(forecast: UnitForecast, issued_at: float) -> UnitForecastRecord:
    """The ``capacity.forecasts`` record of a unit forecast issued at ``issued_at`` (epoch s)."""
    beds, vents = forecast.beds, forecast.ventilators
    return UnitForecastRecord(
        forecast_id=forecast.forecast_id,
        hospital=forecast.hospital,
        unit=forecast.unit,
        issued_for=forecast.issued_for.isoformat(),
        issued_at=issued_at,
        capacity=beds.capacity,
        occupancy_now=beds.in_use_now,
        pipeline_patients=forecast.pipeline_patients,
        days=_days(beds.forecast),
        expected_arrivals=beds.expected_arrivals,
        p_breach=beds.p_breach,
        breach_alert=beds.breach_alert,
        ventilators=None
        if vents is None
        else VentilatorForecast(
            capacity=vents.capacity,
            in_use_now=vents.in_use_now,
            days=_days(vents.forecast),
            expected_arrivals=vents.expected_arrivals,
            p_breach=vents.p_breach,
            breach_alert=vents.breach_alert,
        ),
    )
