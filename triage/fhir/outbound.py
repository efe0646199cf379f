"""FHIR R4 resources that ctriage writes: RiskAssessment (an alert) and AuditEvent (a change).

Both are built as plain JSON and validated with the ``fhir.resources.R4B`` models (R4B is the
package's R4-compatible release; R4 has no package of its own), so what leaves ctriage is a
resource an R4 EHR accepts with ``POST [base]/RiskAssessment``. Patients appear only by their
pseudonym; the CT study by its DICOM Study Instance UID (``urn:dicom:uid`` identifier).

Codes:

- outcome of the ventilation model: SNOMED CT 1258985005 |Invasive mechanical ventilation
  (regime/therapy)|, with 40617009 |Artificial ventilation (regime/therapy)| (synonym
  "mechanical ventilation", the broader concept older systems use) as a second coding; of the ICU
  model: 305351004 |Admission to intensive care unit| (as in :mod:`triage.codes`);
- qualitative risk: http://terminology.hl7.org/CodeSystem/risk-probability (low, moderate, high;
  ctriage's ``critical`` is ``high`` there, with the text saying critical);
- AuditEvent type: DICOM DCM 110100 "Application Activity", action ``U`` (update), outcome ``0``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.riskassessment import RiskAssessment
from pydantic import ValidationError

from triage.fhir.codes import ICU_ENCOUNTER_TYPE, CodeSystem, Coding

RISK_PROBABILITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/risk-probability"
DICOM_DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
AUDIT_ENTITY_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
DICOM_UID_SYSTEM = "urn:dicom:uid"
PSEUDONYM_SYSTEM = "https://ctriage.invalid/fhir/sid/patient-pseudonym"
ADMIN_USER_SYSTEM = "https://ctriage.invalid/fhir/sid/admin-user"
MODEL_SYSTEM = "https://ctriage.invalid/fhir/CodeSystem/risk-model"
CHANGE_SYSTEM = "https://ctriage.invalid/fhir/CodeSystem/admin-action"
POLICY_SYSTEM = "https://ctriage.invalid/fhir/sid/alert-policy"

INVASIVE_VENTILATION = Coding(
    CodeSystem.SNOMED_CT, "1258985005", "Invasive mechanical ventilation (regime/therapy)"
)
ARTIFICIAL_VENTILATION = Coding(
    CodeSystem.SNOMED_CT, "40617009", "Artificial ventilation (regime/therapy)"
)
OUTCOMES: dict[str, tuple[tuple[Coding, ...], str, int]] = {
    # model target -> (codings, text, horizon in days)
    "ventilation_14d": (
        (INVASIVE_VENTILATION, ARTIFICIAL_VENTILATION),
        "invasive mechanical ventilation within 14 days",
        14,
    ),
    "icu_admission": ((ICU_ENCOUNTER_TYPE,), "admission to intensive care", 14),
}
_QUALITATIVE = {
    "low": ("low", "Low likelihood"),
    "moderate": ("moderate", "Moderate likelihood"),
    "high": ("high", "High likelihood"),
    "critical": ("high", "High likelihood"),
}


class FhirOutputError(ValueError):
    """A resource ctriage built does not validate as FHIR R4 (a bug, never bad input)."""


def risk_assessment(
    *,
    alert_id: str,
    patient_pseudonym: str,
    study_uid: str,
    probability: float,
    level: str,
    occurrence: str,
    model_version: str,
    threshold_version: str,
    top_features: Sequence[Mapping[str, Any]],
    completeness: str,
    target: str = "ventilation_14d",
    escalated_from: str | None = None,
) -> dict[str, Any]:
    """A final RiskAssessment for one alert (``occurrence``: ISO 8601 with offset)."""
    escalation = f"; escalated from {escalated_from}" if escalated_from else ""
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": alert_id,
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{alert_id}"}],
        "status": "final",
        "code": {"text": "ventilation-risk triage on chest CT (ctriage)"},
        "subject": {
            "reference": f"Patient/{patient_pseudonym}",
            "identifier": {"system": PSEUDONYM_SYSTEM, "value": patient_pseudonym},
            "display": "pseudonymous patient",
        },
        "occurrenceDateTime": occurrence,
        "method": {
            "coding": [
                {
                    "system": MODEL_SYSTEM,
                    "code": "ctriage-ventilation-xgboost",
                    "version": model_version,
                    "display": "ctriage XGBoost risk model (CT biomarkers + clinical context)",
                }
            ],
            "text": f"ctriage model {model_version}, threshold version {threshold_version}",
        },
        "basis": [
            {
                "type": "ImagingStudy",
                "identifier": {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{study_uid}"},
                "display": "chest CT",
            }
        ],
        "prediction": [_prediction(target, probability, level, top_features)],
        "note": [
            {
                "text": f"risk level {level}{escalation}; model {model_version}; threshold "
                f"version {threshold_version}; data completeness: {completeness}"
            }
        ],
    }
    return _validated(RiskAssessment, resource)


def _prediction(
    target: str, probability: float, level: str, top_features: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The RiskAssessment's one prediction: outcome, probability, level, horizon, reasons."""
    codings, outcome_text, days = OUTCOMES.get(target, OUTCOMES["ventilation_14d"])
    code, display = _QUALITATIVE.get(level, ("high", "High likelihood"))
    prediction: dict[str, Any] = {
        "outcome": {"coding": [c.as_fhir() for c in codings], "text": outcome_text},
        "probabilityDecimal": round(float(probability), 4),
        "qualitativeRisk": {
            "coding": [{"system": RISK_PROBABILITY_SYSTEM, "code": code, "display": display}],
            "text": level,
        },
        "whenRange": {
            "high": {"value": days, "unit": "d", "system": CodeSystem.UCUM.value, "code": "d"}
        },
    }
    reasons = "; ".join(_feature_text(f) for f in top_features)
    if reasons:
        prediction["rationale"] = f"top contributions: {reasons}"
    return prediction


def threshold_audit_event(
    *,
    audit_id: str,
    hospital: str,
    recorded: str,
    changed_by: str,
    role: str,
    source: str,
    old_policy: Mapping[str, Any] | None,
    new_policy: Mapping[str, Any],
    reason: str,
) -> dict[str, Any]:
    """An AuditEvent for one change of a hospital's alert policy (who, when, old -> new, why)."""
    old_version = (old_policy or {}).get("threshold_version") or "none"
    new_version = new_policy.get("threshold_version")
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": audit_id,
        "type": {"system": DICOM_DCM_SYSTEM, "code": "110100", "display": "Application Activity"},
        "subtype": [
            {
                "system": CHANGE_SYSTEM,
                "code": "alert-policy-change",
                "display": "alert policy change",
            }
        ],
        "action": "U",
        "recorded": recorded,
        "outcome": "0",
        "outcomeDesc": f"alert policy of {hospital}: {old_version} -> {new_version}",
        "agent": [
            {
                "type": {"text": role},
                "who": {"identifier": {"system": ADMIN_USER_SYSTEM, "value": changed_by}},
                "name": changed_by,
                "requestor": True,
            }
        ],
        "source": {"site": hospital, "observer": {"display": f"ctriage {source}"}},
        "entity": [
            {
                "what": {"identifier": {"system": POLICY_SYSTEM, "value": hospital}},
                "type": {
                    "system": AUDIT_ENTITY_TYPE_SYSTEM,
                    "code": "2",
                    "display": "System Object",
                },
                "name": f"alert policy {hospital}",
                "description": reason,
                "detail": [
                    {"type": "old", "valueString": json.dumps(old_policy, sort_keys=True)},
                    {"type": "new", "valueString": json.dumps(dict(new_policy), sort_keys=True)},
                    {"type": "reason", "valueString": reason},
                ],
            }
        ],
    }
    return _validated(AuditEvent, resource)


def _feature_text(feature: Mapping[str, Any]) -> str:
    value = feature.get("value")
    shown = "unknown" if value is None else f"{float(value):g}"
    return f"{feature.get('feature')} = {shown} ({feature.get('direction')} risk)"


def _validated(model: Any, resource: dict[str, Any]) -> dict[str, Any]:
    try:
        parsed = model.model_validate(resource)
    except ValidationError as e:
        raise FhirOutputError(f"{resource['resourceType']} does not validate as R4: {e}") from e
    out: dict[str, Any] = json.loads(parsed.model_dump_json(exclude_none=True))
    return out
