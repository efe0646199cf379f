"""FHIR -> clinical features: the fold, codes, statuses, UCUM, windows, no imputation."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from triage.exceptions import FhirRejected, FhirRejectionReason
from triage.fhir.codes import OBSERVATION_DEFINITIONS
from triage.fhir.context import ClinicalContext, maps_to_context
from triage.fhir.features import (
    CLINICAL_FEATURES,
    CONTEXT_FEATURES,
    FEATURES,
    IMAGING_FEATURES,
    CompletenessValues,
    clinical_features,
    completeness,
    feature_vector,
)
from triage.risk.model import RiskModel
from triage.risk.scoring import MODELS_DIR

pytestmark = pytest.mark.unit

CT = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
SUBJECT = {"reference": "Patient/k1-00"}
UCUM = "http://unitsofmeasure.org"
PATIENT = {"resourceType": "Patient", "id": "k1-00", "birthDate": "1950", "gender": "male"}


def quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "system": UCUM, "code": unit, "unit": unit}


def obs(loinc: str, value: float | None, unit: str, at: datetime = CT, **extra: Any) -> dict:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"o-{loinc}-{value}",
        "status": "final",
        "subject": SUBJECT,
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "effectiveDateTime": (at - timedelta(hours=1)).isoformat(),
        **extra,
    }
    if value is not None:
        res["valueQuantity"] = quantity(value, unit)
    return res


def condition(code: str, rid: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": rid,
        "subject": SUBJECT,
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
        **extra,
    }


def fold(*resources: dict[str, Any]) -> ClinicalContext:
    ctx = ClinicalContext()
    for r in resources:
        ctx = ctx.apply(r)
    return ctx


def test_model_vector_unchanged_and_model_loads() -> None:
    """Context-only features stay out of the model vector: the shipped model still loads."""
    assert set(CLINICAL_FEATURES) < set(CONTEXT_FEATURES)
    assert not set(CONTEXT_FEATURES) - set(CLINICAL_FEATURES) & set(FEATURES)
    model = RiskModel.load(MODELS_DIR / "ventilation.ubj")
    assert model.features == FEATURES


def test_blood_pressure_components() -> None:
    bp = obs(
        "85354-9",
        None,
        "",
        component=[
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": quantity(142, "mm[Hg]"),
            },
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                "valueQuantity": quantity(12, "kPa"),
            },
        ],
    )
    assert maps_to_context(bp)
    feats = clinical_features(fold(PATIENT, bp), CT)
    assert feats["systolic_bp_mm_hg"] == 142
    assert feats["diastolic_bp_mm_hg"] == pytest.approx(90.0, abs=0.01)


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "feature", "expected"),
    [
        ("2160-0", 88.42, "umol/L", "creatinine_mg_per_dl", 1.0),
        ("14682-9", 0.1768, "mmol/L", "creatinine_mg_per_dl", 2.0),
        ("22664-7", 10, "mmol/L", "urea_nitrogen_mg_per_dl", 28.01),
        ("89579-7", 0.05, "ng/mL", "troponin_ng_per_l", 50.0),
        ("29463-7", 154, "[lb_av]", "weight_kg", 69.85),
        ("8302-2", 1.75, "m", "height_cm", 175.0),
        ("777-3", 250000, "/uL", "platelets_10e3_per_ul", 250.0),
        ("2276-4", 1000, "pmol/L", "ferritin_ng_per_ml", 445.0),
        ("3151-8", 4, "L/min", "o2_flow_l_per_min", 4.0),
        ("39156-5", 31.2, "kg/m2", "bmi_kg_per_m2", 31.2),
    ],
)
def test_ucum_conversions_of_context_observations(
    loinc: str, value: float, unit: str, feature: str, expected: float
) -> None:
    feats = clinical_features(fold(PATIENT, obs(loinc, value, unit)), CT)
    assert feats[feature] == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "reason"),
    [
        ("2160-0", 1.0, "mg", FhirRejectionReason.UNIT_MISMATCH),
        ("8302-2", 1.75, "cm", FhirRejectionReason.IMPLAUSIBLE_VALUE),  # metres sent as cm
        ("3150-0", 15, "%", FhirRejectionReason.IMPLAUSIBLE_VALUE),  # FiO2 below room air
    ],
)
def test_plausibility_and_unit_rejections(loinc: str, value: float, unit: str, reason: str) -> None:
    with pytest.raises(FhirRejected) as info:
        fold(PATIENT, obs(loinc, value, unit))
    assert info.value.reason == reason


def test_every_definition_converts_its_canonical_unit_identically() -> None:
    for d in OBSERVATION_DEFINITIONS.values():
        assert d.conversions[d.unit] == (1.0, 0.0), d.key


def test_condition_onset_and_abatement_relative_to_ct() -> None:
    later = condition("44054006", "a", onsetDateTime=(CT + timedelta(days=3)).isoformat())
    resolved_after = condition(
        "195967001",
        "b",
        clinicalStatus={"coding": [{"code": "resolved"}]},
        onsetDateTime="2020-01-01",
        abatementDateTime=(CT + timedelta(days=1)).isoformat(),
    )
    resolved_before = condition(
        "13645005",
        "c",
        clinicalStatus={"coding": [{"code": "resolved"}]},
        abatementDateTime=(CT - timedelta(days=1)).isoformat(),
    )
    feats = clinical_features(fold(PATIENT, later, resolved_after, resolved_before), CT)
    assert feats["has_diabetes"] == 0.0  # diagnosed after the CT
    assert feats["has_asthma"] == 1.0  # still present at CT time
    assert feats["has_copd"] == 0.0


def test_smoking_status_observation() -> None:
    def status(code: str, at: datetime, rid: str) -> dict[str, Any]:
        res = obs("72166-2", None, "", at)
        res["id"] = rid
        res["valueCodeableConcept"] = {
            "coding": [{"system": "http://snomed.info/sct", "code": code}]
        }
        return res

    smoker = status("449868002", CT - timedelta(days=30), "s1")
    never = status("266919005", CT - timedelta(days=400), "s0")
    assert maps_to_context(smoker)
    ctx = fold(PATIENT, smoker, never)  # the older "never" does not override
    assert clinical_features(ctx, CT)["has_smoking"] == 1.0


def test_unmapped_resources_do_not_map() -> None:
    assert not maps_to_context(obs("94531-1", None, ""))  # SARS-CoV-2 PCR: not a feature
    assert not maps_to_context(condition("840539006", "x"))  # COVID-19 itself
    assert not maps_to_context({"resourceType": "Claim"})
    assert maps_to_context(PATIENT)


def test_old_context_records_upgrade() -> None:
    old = {"birth_year": 1950, "condition_records": {"c1": ["diabetes", True]}, "resources_seen": 2}
    ctx = ClinicalContext.from_dict(old)
    assert ctx.has_patient
    assert clinical_features(ctx, CT)["has_diabetes"] == 1.0


def pneumonia(
    rid: str,
    codings: list[dict[str, str]],
    onset: datetime | None = CT - timedelta(days=4),
    clinical: str | None = "active",
    verification: str | None = "confirmed",
    **extra: Any,
) -> dict[str, Any]:
    """An R4 Condition shaped as EHRs send an encounter diagnosis (statuses with their systems)."""
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": rid,
        "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-condition"]},
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "encounter-diagnosis",
                        "display": "Encounter Diagnosis",
                    }
                ]
            }
        ],
        "code": {"coding": codings, "text": "Pneumonia"},
        "subject": SUBJECT,
        "encounter": {"reference": "Encounter/e-1"},
        "recordedDate": (CT - timedelta(hours=2)).isoformat(),
        **extra,
    }
    if onset is not None:
        resource["onsetDateTime"] = onset.isoformat()
    if clinical is not None:
        resource["clinicalStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": clinical,
                }
            ]
        }
    if verification is not None:
        resource["verificationStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": verification,
                }
            ]
        }
    return resource


SCT = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"


@pytest.mark.parametrize(
    "codings",
    [
        [{"system": SCT, "code": "233604007", "display": "Pneumonia"}],
        [
            {
                "system": SCT,
                "code": "882784691000119100",
                "display": "Pneumonia caused by SARS-CoV-2",
            }
        ],
        [{"system": SCT, "code": "75570004", "display": "Viral pneumonia"}],
        [{"system": ICD10, "code": "J18.9", "display": "Pneumonia, unspecified"}],
        [{"system": ICD10, "code": "J12.82", "display": "Pneumonia due to COVID-19"}],
        [  # WHO coding of COVID-19 pneumonia: U07.1 plus J12.8 (U07.1 alone is not pneumonia)
            {"system": ICD10, "code": "U07.1", "display": "COVID-19, virus identified"},
            {"system": ICD10, "code": "J12.8", "display": "Other viral pneumonia"},
        ],
        [{"system": ICD10, "code": "J10.0", "display": "Influenza with pneumonia"}],
    ],
)
def test_pneumonia_condition_sets_has_pneumonia(codings: list[dict[str, str]]) -> None:
    resource = pneumonia("pn-1", codings)
    assert maps_to_context(resource)
    feats = clinical_features(fold(PATIENT, resource), CT)
    assert feats["has_pneumonia"] == 1.0
    assert all(feats[f"has_{k}"] == 0.0 for k in ("diabetes", "copd", "asthma"))


@pytest.mark.parametrize(
    "codings",
    [
        [{"system": SCT, "code": "840539006", "display": "COVID-19"}],
        [{"system": ICD10, "code": "U07.1", "display": "COVID-19, virus identified"}],
        [{"system": SCT, "code": "6142004", "display": "Influenza"}],
        [{"system": ICD10, "code": "J10.1", "display": "Influenza with other respiratory"}],
    ],
)
def test_covid_or_influenza_without_pneumonia_is_not_pneumonia(
    codings: list[dict[str, str]],
) -> None:
    resource = pneumonia("pn-2", codings)
    assert not maps_to_context(resource)
    assert clinical_features(fold(PATIENT, resource), CT)["has_pneumonia"] is None


@pytest.mark.parametrize(
    ("onset", "clinical", "verification", "abated", "expected"),
    [
        (CT - timedelta(days=4), "active", "confirmed", None, 1.0),
        (CT - timedelta(days=4), None, None, None, 1.0),  # statuses absent: asserted, active
        (CT - timedelta(days=4), "active", "provisional", None, None),
        (CT - timedelta(days=4), "active", "unconfirmed", None, None),
        (CT - timedelta(days=4), "active", "refuted", None, None),
        (CT - timedelta(days=4), "active", "entered-in-error", None, None),
        (CT + timedelta(hours=6), "active", "confirmed", None, None),  # diagnosed after the CT
        (CT - timedelta(days=60), "resolved", "confirmed", CT - timedelta(days=30), None),
        (CT - timedelta(days=4), "resolved", "confirmed", CT + timedelta(days=9), 1.0),
    ],
)
def test_pneumonia_statuses_and_onset_honoured(
    onset: datetime,
    clinical: str | None,
    verification: str | None,
    abated: datetime | None,
    expected: float | None,
) -> None:
    extra = {"abatementDateTime": abated.isoformat()} if abated is not None else {}
    resource = pneumonia(
        "pn-3", [{"system": SCT, "code": "233604007"}], onset, clinical, verification, **extra
    )
    assert clinical_features(fold(PATIENT, resource), CT)["has_pneumonia"] == expected


def test_no_pneumonia_record_is_missing_not_absent() -> None:
    """Comorbidities default to 0 once a record exists; a diagnosis not yet made stays unknown."""
    diabetes = condition("44054006", "d")
    feats = clinical_features(fold(PATIENT, diabetes), CT)
    assert feats["has_diabetes"] == 1.0 and feats["has_copd"] == 0.0
    assert feats["has_pneumonia"] is None
    assert clinical_features(ClinicalContext(), CT)["has_pneumonia"] is None


def test_pneumonia_update_to_entered_in_error_withdraws_it() -> None:
    first = pneumonia("pn-4", [{"system": SCT, "code": "882784691000119100"}])
    withdrawn = pneumonia(
        "pn-4", [{"system": SCT, "code": "882784691000119100"}], verification="entered-in-error"
    )
    ctx = fold(PATIENT, first)
    assert clinical_features(ctx, CT)["has_pneumonia"] == 1.0
    ctx = ctx.apply(withdrawn)
    assert clinical_features(ctx, CT)["has_pneumonia"] is None
    again = ClinicalContext.from_dict(json.loads(json.dumps(ctx.apply(first).to_dict())))
    assert clinical_features(again, CT)["has_pneumonia"] == 1.0


def test_pneumonia_reaches_the_model_and_raises_risk() -> None:
    """The shipped clinical model reads has_pneumonia from FHIR now (it was always missing)."""
    model = RiskModel.load(MODELS_DIR / "ventilation_clinical.ubj")
    without = clinical_features(fold(PATIENT, condition("44054006", "d")), CT)
    with_pn = clinical_features(
        fold(
            PATIENT,
            condition("44054006", "d"),
            pneumonia("pn-5", [{"system": SCT, "code": "233604007"}]),
        ),
        CT,
    )
    p_without = model.score(feature_vector(None, without)).probability
    p_with = model.score(feature_vector(None, with_pn)).probability
    assert p_with > p_without


def test_completeness_still_ignores_pneumonia() -> None:
    """has_pneumonia comes with (or after) the CT: its absence does not make a record partial."""
    ctx = fold(
        PATIENT,
        *(condition(code, code) for code in ("44054006",)),
        *(
            obs(
                d.loinc[0].code,
                (d.plausible_min + d.plausible_max) / 2,
                d.unit,
                id=f"x-{k.value}".replace("_", "-"),
            )
            for k, d in OBSERVATION_DEFINITIONS.items()
            if d.in_model
        ),
    )
    imaging = dict.fromkeys(IMAGING_FEATURES, 1.0)
    feats = clinical_features(ctx, CT)
    assert feats["has_pneumonia"] is None
    assert completeness(feature_vector(imaging, feats)) is CompletenessValues.COMPLETE


LONG_SUBJECT = {"reference": "Patient/k1-00112233445566778899"}
CT_TIME = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def patient(birth: str = "1950", gender: str = "male") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "k1-00112233445566778899",
        "birthDate": birth,
        "gender": gender,
    }


def status_condition(
    code: str,
    system: str = "http://snomed.info/sct",
    clinical: str | None = "active",
    verification: str | None = "confirmed",
    rid: str = "c1",
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Condition",
        "id": rid,
        "subject": LONG_SUBJECT,
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
        "subject": LONG_SUBJECT,
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "effectiveDateTime": at.isoformat(),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


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
        status_condition("44054006", rid="a"),  # SNOMED CT diabetes type 2
        status_condition(
            "J44.1", system="http://hl7.org/fhir/sid/icd-10", rid="b"
        ),  # COPD category
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
    ctx = fold(
        patient(), status_condition("44054006", clinical=clinical, verification=verification)
    )
    assert clinical_features(ctx, CT_TIME)["has_diabetes"] == (1.0 if counted else 0.0)


def test_condition_update_replaces_earlier_version() -> None:
    ctx = fold(
        patient(), status_condition("44054006"), status_condition("44054006", clinical="resolved")
    )
    assert clinical_features(ctx, CT_TIME)["has_diabetes"] == 0.0
    # A second, still active record of the same disease keeps it on.
    ctx = ctx.apply(status_condition("73211009", rid="c2"))
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
        status_condition("44054006"),
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
