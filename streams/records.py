"""Typed records carried by ctriage topics.

Topics carry JSON bytes; each topic declares its record class (:mod:`streams.topics`), and the
worker's topics decode a message into it before an agent sees it (:meth:`Record.from_data`). A
payload that is not a valid record arrives as :class:`Malformed`, keeping its bytes, so it
becomes a typed dead letter instead of a crashed agent. Times are epoch seconds (``*_at``) for
latency arithmetic, or ISO 8601 strings (``*_time``) for simulated clinical time. The libraries'
types are mapped to and from these records in :mod:`streams.mapping`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from triage.fhir import CensusChangeValues


@dataclass(frozen=True)
class Malformed:
    """A message that is not a valid record of its topic's class: its bytes, and why."""

    payload: bytes
    error: ValidationError


class Record(BaseModel):
    """Base of every record: frozen, no unknown fields, JSON on the wire."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_bytes(self) -> bytes:
        """Serialise to the JSON bytes that go on the wire."""
        return self.model_dump_json().encode()

    @classmethod
    def from_data(cls, data: Any, *, preferred_type: Any = None) -> Self | Malformed:
        """Decode a message value (Faust's ``value_type`` hook): the record, or why not."""
        payload = bytes(data or b"")
        try:
            return cls.model_validate_json(payload)
        except ValidationError as e:
            return Malformed(payload, e)


class CtStudy(Record):
    """A CT study ready for quantification: a claim check, never the pixels."""

    event_id: str
    study_uid: str
    patient_pseudonym: str
    study_uri: str = Field(description="file:// folder of the series, or a DICOMweb reference")
    source: str
    ct_time: str = Field(description="acquisition time (ISO 8601), the clinical clock")
    published_at: float = Field(description="wall-clock epoch seconds when ingress published it")
    hospital: str


class FhirResourceEvent(Record):
    """One pseudonymised FHIR resource (R4 unless ``fhir_version`` says 5.0) for one patient."""

    event_id: str
    patient_pseudonym: str
    resource_type: str
    resource: dict[str, Any]
    source: str
    event_time: str = Field(description="clinical time the resource became known (ISO 8601)")
    published_at: float
    hospital: str
    fhir_version: str = Field(default="4.0", description="FHIR release: 4.0 (R4) or 5.0 (R5)")


class StageTimings(Record):
    """Seconds spent in each stage of one study's path through the pipeline."""

    load_s: float = 0.0
    inference_s: float = 0.0
    scoring_s: float = 0.0


class BurdenChange(Record):
    """Lung burden change from an earlier CT of the patient to this one (``triage.timeline``)."""

    since_study_uid: str
    since_time: str
    interval_days: float
    lesion_from_percent: float
    lesion_points: float = Field(description="change in lesion % of lung (percentage points)")
    lesion_points_per_day: float | None = None
    severity_points: float | None = Field(default=None, description="CT severity score change")
    severity_points_per_day: float | None = None
    aerated_points: float | None = Field(
        default=None, description="change in well-aerated lung % (percentage points; fall < 0)"
    )
    lung_volume_ratio: float | None = Field(
        default=None, description="this study's lung volume over the earlier study's"
    )


class Quantification(Record):
    """Imaging biomarkers of one study from the lesion model."""

    study_uid: str
    patient_pseudonym: str
    biomarkers: dict[str, float]
    lesion_model: str
    lesion_model_version: str
    ct_time: str
    published_at: float
    hospital: str
    timings: StageTimings
    study_uri: str = ""  # the claim check it was computed from (for results sent back to PACS)
    #: zone involvement, CT severity score, distribution (``lesion_unet``; empty for threshold)
    regional: dict[str, float] = Field(default_factory=dict)
    #: claim check of the model's own masks (``file://``), kept only for the PACS write-back
    masks_uri: str = ""
    #: RSNA consensus category (rule-based, :mod:`inference.rsna`) and its deciding findings
    rsna_category: str = ""
    rsna_findings: dict[str, float] = Field(default_factory=dict)


class Contribution(Record):
    """One feature's share of a risk score, as shown to a clinician."""

    feature: str
    value: float | None
    contribution: float
    direction: str


class RiskAssessment(Record):
    """The ventilation risk of one study; the unit every study yields exactly once."""

    risk_id: str
    study_uid: str
    patient_pseudonym: str
    probability: float
    level: str
    alert: bool
    model_version: str
    threshold_version: str
    threshold: float
    biomarkers: dict[str, float]
    top_features: list[Contribution]
    completeness: str
    ct_time: str
    hospital: str
    published_at: float
    # placed before the defaults below by pydantic's rules; empty for the threshold model
    regional: dict[str, float] = Field(default_factory=dict)
    scored_at: float
    timings: StageTimings
    revision: int = Field(
        default=0, description="0: scored on arrival; n: n-th re-score after late clinical data"
    )
    completeness_note: str = Field(
        default="", description="what the model did not know, in a physician's words"
    )
    rsna_category: str = ""
    rsna_findings: dict[str, float] = Field(default_factory=dict)
    #: burden change since the patient's previous / first CT (None: first CT of the patient)
    change_since_prior: BurdenChange | None = None
    change_since_first: BurdenChange | None = None

    @property
    def latency_s(self) -> float:
        """End-to-end latency from the CT event's publication to this score."""
        return self.scored_at - self.published_at

    @property
    def ct_severity_score(self) -> float | None:
        """0-30 over six lung zones; ``None`` when the lesion model does not measure zones."""
        return self.regional.get("ct_severity_score")

    @property
    def bilateral(self) -> bool | None:
        """Lesions in both lungs; ``None`` when the lesion model does not measure zones."""
        return bool(self.regional["bilateral"]) if "bilateral" in self.regional else None


class Alert(Record):
    """A ventilation-risk alert for the emergency department."""

    alert_id: str
    risk_id: str
    study_uid: str
    patient_pseudonym: str
    probability: float
    level: str
    model_version: str
    threshold_version: str
    lesion_percent: float
    top_features: list[Contribution]
    completeness: str
    ct_time: str
    hospital: str
    raised_at: float
    # issue 6: escalation and what a physician reads (defaults keep older records valid)
    kind: str = Field(default="initial", description="initial | escalation | worsening")
    escalated_from: str | None = Field(default=None, description="level of the earlier alert")
    previous_alert_id: str | None = None
    level_threshold: float | None = Field(default=None, description="where the level starts")
    completeness_note: str = ""
    revision: int = Field(default=0, description="the risk revision that raised it")
    ct_severity_score: float | None = Field(
        default=None, description="0-30 over six lung zones (lesion_unet); None: not measured"
    )
    bilateral: bool | None = None
    # issue 16: pattern and change over time (defaults keep older records valid)
    rsna_category: str = ""
    rsna_findings: dict[str, float] = Field(default_factory=dict)
    change_since_prior: BurdenChange | None = None
    change_since_first: BurdenChange | None = None
    worsening_reasons: list[str] = Field(
        default_factory=list, description="kind worsening: lesion_rise | severity_rise"
    )
    worsening_rule: str | None = Field(default=None, description="the rule's version")
    worsening_since: BurdenChange | None = Field(
        default=None, description="kind worsening: the change that fired the rule"
    )
    secondary_worsening: bool = Field(default=False, description="the first CT was mild")

    @property
    def reported_change(self) -> BurdenChange | None:
        """The change the alert reports: the rule's (worsening), else since the prior CT."""
        return self.worsening_since or self.change_since_prior

    def change_text(self) -> str:
        """The ED line: was 12 % on 2020-11-02, now 31 % (+19 in 3 days); "" for a first CT."""
        change = self.reported_change
        if change is None:
            return ""
        since = datetime.fromisoformat(change.since_time).date().isoformat()
        days = change.interval_days
        interval = f"{days:.0f} days" if days >= 1.5 else f"{days * 24:.0f} h"
        return (
            f"was {change.lesion_from_percent:.0f} % on {since}, now {self.lesion_percent:.0f} % "
            f"({change.lesion_points:+.0f} in {interval})"
        )


class TriageConfig(Record):
    """A hospital's alert policy; compacted ``triage.config`` keeps the latest per hospital.

    ``levels`` maps moderate/high/critical to the probability each starts at; records written
    before named levels carry one ``threshold`` instead (read as ``high``; see
    :func:`triage.alerts.levels_from_threshold`).
    """

    hospital: str
    threshold_version: str
    levels: dict[str, float] | None = None
    alert_from: str = "high"
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    changed_by: str
    reason: str
    changed_at: float
    previous_version: str | None = None
    #: the hospital's worsening rule (issue 16; None: the worker's configured rule)
    worsening: dict[str, float] | None = None
    #: the hospital's site calibration of the risk model (issue 13; None: the model as loaded):
    #: ``{"base_version", "site_calibration"}``, see :func:`triage.alerts.risk_calibration`
    calibration: dict[str, Any] | None = None


class ThresholdAudit(Record):
    """One change of a hospital's alert policy: who, when, old -> new, why (``triage.audit``)."""

    audit_id: str
    hospital: str
    changed_by: str
    role: str
    source: str = Field(description="admin-api | cli")
    changed_at: float
    old_version: str | None
    new_version: str
    old_policy: dict[str, Any] | None
    new_policy: dict[str, Any]
    reason: str
    audit_event: dict[str, Any] = Field(description="the same change as a FHIR R4 AuditEvent")


class CapacityEvent(Record):
    """A change to the ICU or ventilator census or to the pipeline of at-risk patients.

    ``probability`` of a ``pipeline_risk`` event is the patient's ventilation risk.
    """

    kind: CensusChangeValues
    hospital: str
    patient_pseudonym: str
    event_time: str
    probability: float | None = None
    unit: str | None = Field(default=None, description="ICU unit; None: the hospital's ICU")


class ForecastDay(Record):
    """ICU occupancy (or ventilators in use) forecast for one day."""

    date: str
    expected: float
    lower80: float
    upper80: float
    p_exceed: float
    lower95: float | None = None
    upper95: float | None = None
    median: float | None = None


class VentilatorForecast(Record):
    """Ventilators in use over the horizon, against the unit's ventilators."""

    capacity: int
    in_use_now: int
    days: list[ForecastDay]
    expected_arrivals: float | None = None
    p_breach: float | None = None
    breach_alert: bool = False


class UnitForecastRecord(Record):
    """An ICU occupancy forecast for one hospital (unit), with its ventilators when known."""

    forecast_id: str
    hospital: str
    issued_for: str = Field(description="clinical time the forecast starts from (ISO 8601)")
    issued_at: float
    capacity: int
    occupancy_now: int
    pipeline_patients: int
    days: list[ForecastDay]
    unit: str | None = None
    expected_arrivals: float | None = Field(
        default=None, description="unannounced admissions expected over the horizon"
    )
    p_breach: float | None = Field(
        default=None, description="P(occupancy > capacity on some day of the horizon)"
    )
    breach_alert: bool = Field(default=False, description="p_breach reached the alert level")
    ventilators: VentilatorForecast | None = Field(
        default=None, description="ventilators in use, same days and issue time"
    )


class DeadLetter(Record):
    """A message the pipeline could not process, with everything needed to replay it."""

    reason_code: str
    stage: str
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    error: str
    payload: str
    key: str | None
    at: float
