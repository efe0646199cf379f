"""Clinical features beyond the model vector: components, UCUM, onset dates, status observations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from triage.codes import OBSERVATION_DEFINITIONS
from triage.exceptions import FhirRejected, FhirRejectionReason
from triage.features import (
    CLINICAL_FEATURES,
    CONTEXT_FEATURES,
    FEATURES,
    ClinicalContext,
    clinical_features,
    maps_to_context,
)
from triage.risk import RiskModel

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
    model = RiskModel.load(Path(__file__).parents[2] / "triage" / "models" / "ventilation.ubj")
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
