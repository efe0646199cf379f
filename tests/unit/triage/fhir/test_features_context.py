"""FHIR -> clinical features: codes, statuses, UCUM conversion, windows, no imputation."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from triage.exceptions import FhirRejected, FhirRejectionReason
from triage.fhir.context import ClinicalContext
from triage.fhir.features import (
    CLINICAL_FEATURES,
    FEATURES,
    IMAGING_FEATURES,
    CompletenessValues,
    clinical_features,
    completeness,
    feature_vector,
)

pytestmark = pytest.mark.unit

SUBJECT = {"reference": "Patient/k1-00112233445566778899"}
CT_TIME = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
UCUM = "http://unitsofmeasure.org"


def patient(birth: str = "1950", gender: str = "male") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "k1-00112233445566778899",
        "birthDate": birth,
        "gender": gender,
    }


def condition(
    code: str,
    system: str = "http://snomed.info/sct",
    clinical: str | None = "active",
    verification: str | None = "confirmed",
    rid: str = "c1",
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Condition",
        "id": rid,
        "subject": SUBJECT,
        "code": {"coding": [{"system": system, "code": code}]},
    }
    if clinical:
        res["clinicalStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": clinical,
                }
            ]
        }
    if verification:
        res["verificationStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": verification,
                }
            ]
        }
    return res


def observation(
    loinc: str,
    value: float,
    unit: str,
    at: datetime,
    status: str = "final",
    rid: str = "o1",
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": status,
        "subject": SUBJECT,
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "effectiveDateTime": at.isoformat(),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def fold(*resources: dict[str, Any]) -> ClinicalContext:
    ctx = ClinicalContext()
    for res in resources:
        ctx = ctx.apply(res)
    return ctx


def test_feature_order_imaging_first() -> None:
    assert FEATURES[:6] == (
        "lung_volume_ml",
        "lesion_volume_ml",
        "lesion_percent",
        "ggo_percent",
        "consolidation_percent",
        "well_aerated_percent",
    )
    assert FEATURES == IMAGING_FEATURES + CLINICAL_FEATURES
    from inference.biomarkers import Biomarkers

    assert tuple(f.name for f in dataclasses.fields(Biomarkers)) == IMAGING_FEATURES
    assert len(set(FEATURES)) == len(FEATURES)


def test_patient_age_and_sex() -> None:
    feats = clinical_features(fold(patient("1950-06-01", "female")), CT_TIME)
    assert feats["age_years"] == 74.0
    assert feats["sex_male"] == 0.0
    assert clinical_features(fold(patient(gender="unknown")), CT_TIME)["sex_male"] is None


def test_apply_is_pure() -> None:
    ctx = ClinicalContext()
    new = ctx.apply(patient())
    assert ctx.birth_year is None and new.birth_year == 1950


def test_condition_by_snomed_and_icd10_prefix() -> None:
    ctx = fold(
        patient(),
        condition("44054006", rid="a"),  # SNOMED CT diabetes type 2
        condition("J44.1", system="http://hl7.org/fhir/sid/icd-10", rid="b"),  # COPD category
    )
    feats = clinical_features(ctx, CT_TIME)
    assert feats["has_diabetes"] == 1.0
    assert feats["has_copd"] == 1.0
    assert feats["has_asthma"] == 0.0


@pytest.mark.parametrize(
    ("clinical", "verification", "counted"),
    [
        ("active", "confirmed", True),
        ("recurrence", None, True),
        (None, "confirmed", True),
        ("inactive", "confirmed", False),
        ("resolved", "confirmed", False),
        ("active", "refuted", False),
        ("active", "entered-in-error", False),
        ("active", "provisional", False),
    ],
)
def test_condition_status_honoured(
    clinical: str | None, verification: str | None, counted: bool
) -> None:
    ctx = fold(patient(), condition("44054006", clinical=clinical, verification=verification))
    assert clinical_features(ctx, CT_TIME)["has_diabetes"] == (1.0 if counted else 0.0)


def test_condition_update_replaces_earlier_version() -> None:
    ctx = fold(patient(), condition("44054006"), condition("44054006", clinical="resolved"))
    assert clinical_features(ctx, CT_TIME)["has_diabetes"] == 0.0
    # A second, still active record of the same disease keeps it on.
    ctx = ctx.apply(condition("73211009", rid="c2"))
    assert clinical_features(ctx, CT_TIME)["has_diabetes"] == 1.0


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "feature", "expected"),
    [
        ("8310-5", 101.3, "[degF]", "temperature_cel", 38.5),
        ("8310-5", 311.15, "K", "temperature_cel", 38.0),
        ("1988-5", 5.2, "mg/dL", "crp_mg_per_l", 52.0),
        ("48065-7", 1.25, "ug/mL{FEU}", "d_dimer_ng_per_ml_feu", 1250.0),
        ("731-0", 900, "/uL", "lymphocytes_10e3_per_ul", 0.9),
        ("2532-0", 5.0, "ukat/L", "ldh_u_per_l", 300.0),
        ("2708-6", 91, "%", "spo2_percent", 91.0),
        ("9279-1", 24, "/min", "respiratory_rate_per_min", 24.0),
    ],
)
def test_ucum_conversion_to_canonical_units(
    loinc: str, value: float, unit: str, feature: str, expected: float
) -> None:
    ctx = fold(patient(), observation(loinc, value, unit, CT_TIME - timedelta(hours=1)))
    assert clinical_features(ctx, CT_TIME)[feature] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "reason"),
    [
        ("8310-5", 38.0, "mg/L", FhirRejectionReason.UNIT_MISMATCH),
        ("1988-5", 10.0, "mmol/L", FhirRejectionReason.UNIT_MISMATCH),
        ("59408-5", 130.0, "%", FhirRejectionReason.IMPLAUSIBLE_VALUE),
        ("8310-5", 60.0, "Cel", FhirRejectionReason.IMPLAUSIBLE_VALUE),
        ("8867-4", 0.0, "/min", FhirRejectionReason.IMPLAUSIBLE_VALUE),
    ],
)
def test_bad_units_and_impossible_values_rejected(
    loinc: str, value: float, unit: str, reason: FhirRejectionReason
) -> None:
    with pytest.raises(FhirRejected) as info:
        fold(patient(), observation(loinc, value, unit, CT_TIME))
    assert info.value.reason is reason
    assert info.value.resource_type == "Observation"


def test_latest_value_within_window_before_ct() -> None:
    ctx = fold(
        patient(),
        observation("59408-5", 96, "%", CT_TIME - timedelta(hours=80), rid="a"),  # outside 72 h
        observation("59408-5", 93, "%", CT_TIME - timedelta(hours=10), rid="b"),
        observation("59408-5", 90, "%", CT_TIME - timedelta(hours=2), rid="c"),
        observation("59408-5", 85, "%", CT_TIME + timedelta(hours=1), rid="d"),  # after the CT
    )
    assert clinical_features(ctx, CT_TIME)["spo2_percent"] == 90.0
    assert clinical_features(ctx, CT_TIME - timedelta(hours=5))["spo2_percent"] == 93.0
    # Only a value older than the window: missing, not carried forward.
    assert clinical_features(ctx, CT_TIME - timedelta(hours=20), window_h=6)["spo2_percent"] is None


def test_missing_stays_none_never_imputed() -> None:
    feats = clinical_features(fold(patient()), CT_TIME)
    assert feats["crp_mg_per_l"] is None and feats["spo2_percent"] is None
    empty = clinical_features(ClinicalContext(), CT_TIME)
    assert all(value is None for value in empty.values())


def test_entered_in_error_retracts_value() -> None:
    obs = observation("1988-5", 40.0, "mg/L", CT_TIME - timedelta(hours=1))
    ctx = fold(patient(), obs, {**obs, "status": "entered-in-error"})
    assert clinical_features(ctx, CT_TIME)["crp_mg_per_l"] is None


def test_invalid_fhir_rejected_with_validation_failed() -> None:
    bad = observation("1988-5", 40.0, "mg/L", CT_TIME)
    del bad["status"]  # required in R4
    with pytest.raises(FhirRejected) as info:
        ClinicalContext().apply(bad)
    assert info.value.reason is FhirRejectionReason.VALIDATION_FAILED
    with pytest.raises(FhirRejected) as info:
        ClinicalContext().apply({"resourceType": "Nope"})
    assert info.value.reason is FhirRejectionReason.UNKNOWN_RESOURCE_TYPE


def test_observation_without_subject_rejected() -> None:
    obs = observation("1988-5", 40.0, "mg/L", CT_TIME)
    del obs["subject"]
    with pytest.raises(FhirRejected) as info:
        ClinicalContext().apply(obs)
    assert info.value.reason is FhirRejectionReason.MISSING_SUBJECT


def test_context_round_trips_through_json() -> None:
    ctx = fold(
        patient(),
        condition("44054006"),
        observation("59408-5", 92, "%", CT_TIME - timedelta(hours=3)),
    )
    back = ClinicalContext.from_dict(json.loads(json.dumps(ctx.to_dict())))
    assert back == ctx
    assert clinical_features(back, CT_TIME) == clinical_features(ctx, CT_TIME)


def test_feature_vector_and_completeness() -> None:
    bio = dict.fromkeys(IMAGING_FEATURES, 1.0)
    ctx = fold(patient(), observation("59408-5", 92, "%", CT_TIME - timedelta(hours=3)))
    vec = feature_vector(bio, clinical_features(ctx, CT_TIME))
    assert tuple(vec) == FEATURES
    assert completeness(vec) is CompletenessValues.NO_LABS
    assert completeness(feature_vector(None, clinical_features(ctx, CT_TIME))) == "no imaging"
    no_record = feature_vector(bio, clinical_features(ClinicalContext(), CT_TIME))
    assert completeness(no_record) == "no clinical record"
    full = feature_vector(bio, dict.fromkeys(CLINICAL_FEATURES, 1.0))
    assert completeness(full) is CompletenessValues.COMPLETE


def test_synthea_records_fold_without_rejection(shared_data: Path) -> None:
    files = sorted((shared_data / "fhir/synthea-covid/bundles").glob("*.json"))
    raw = json.loads(files[0].read_text())
    ctx = ClinicalContext()
    for entry in raw["entry"]:
        ctx = ctx.apply(entry["resource"])
    assert ctx.birth_year is not None
    assert ctx.observations  # Synthea's vital signs use the R4 profile's LOINC codes
