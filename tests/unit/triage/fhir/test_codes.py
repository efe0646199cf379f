from __future__ import annotations

import pytest

from triage.fhir.codes import (
    CONDITION_VALUE_SETS,
    ENCOUNTER_CLASS_INPATIENT,
    ICU_ENCOUNTER_TYPE,
    OBSERVATION_DEFINITIONS,
    CodeSystem,
    ConditionKey,
    ObservationCategory,
    ObservationKey,
    condition_key_for,
    is_icu_encounter,
    observation_key_for,
)

pytestmark = pytest.mark.unit


def test_every_condition_has_snomed_and_icd10_primary_codings() -> None:
    assert set(CONDITION_VALUE_SETS) == set(ConditionKey)
    for key, value_set in CONDITION_VALUE_SETS.items():
        snomed, icd10 = value_set.primary_codings
        assert snomed.system is CodeSystem.SNOMED_CT and snomed.code.isdigit()
        assert icd10.system is CodeSystem.ICD_10
        assert condition_key_for(snomed.system, snomed.code) is key
        assert condition_key_for(icd10.system, icd10.code) is key


def test_no_code_belongs_to_two_conditions() -> None:
    for value_set in CONDITION_VALUE_SETS.values():
        for coding in value_set.snomed + value_set.icd10:
            matches = [
                vs.key
                for vs in CONDITION_VALUE_SETS.values()
                if vs.matches(coding.system, coding.code)
            ]
            assert matches == [value_set.key], coding


@pytest.mark.parametrize(
    ("system", "code", "expected"),
    [
        (CodeSystem.ICD_10, "E11.65", ConditionKey.DIABETES),
        (CodeSystem.ICD_10, "e119", ConditionKey.DIABETES),
        (CodeSystem.ICD_10, "J44", ConditionKey.COPD),
        (CodeSystem.ICD_10, "C34.1", ConditionKey.CANCER),
        (CodeSystem.ICD_10, "Z72.0", ConditionKey.SMOKING),
        (CodeSystem.SNOMED_CT, "77176002", ConditionKey.SMOKING),
        (CodeSystem.SNOMED_CT, "77386006", None),  # pregnancy, not smoking
        (CodeSystem.SNOMED_CT, "840539006", None),  # COVID-19 itself is not a comorbidity
        (CodeSystem.LOINC, "44054006", None),  # right code, wrong system
    ],
)
def test_condition_lookup(system: str, code: str, expected: ConditionKey | None) -> None:
    assert condition_key_for(system, code) == expected


def test_observation_codes_and_units_follow_the_contract() -> None:
    expected = {
        ObservationKey.SPO2: ("59408-5", "%"),
        ObservationKey.RESPIRATORY_RATE: ("9279-1", "/min"),
        ObservationKey.HEART_RATE: ("8867-4", "/min"),
        ObservationKey.TEMPERATURE: ("8310-5", "Cel"),
        ObservationKey.CRP: ("1988-5", "mg/L"),
        ObservationKey.D_DIMER: ("48065-7", "ng/mL{FEU}"),
        ObservationKey.LYMPHOCYTES: ("731-0", "10*3/uL"),
        ObservationKey.LDH: ("2532-0", "U/L"),
    }
    assert set(OBSERVATION_DEFINITIONS) == set(ObservationKey)
    for key, (loinc, unit) in expected.items():
        definition = OBSERVATION_DEFINITIONS[key]
        assert definition.loinc[0].code == loinc
        assert definition.unit == unit
        assert definition.unit_coding.system is CodeSystem.UCUM
        assert definition.plausible_min < definition.plausible_max
        assert observation_key_for(CodeSystem.LOINC, loinc) is key
    assert observation_key_for(CodeSystem.LOINC, "2708-6") is ObservationKey.SPO2
    assert observation_key_for(CodeSystem.SNOMED_CT, "8867-4") is None
    vitals = {
        k
        for k, d in OBSERVATION_DEFINITIONS.items()
        if d.category is ObservationCategory.VITAL_SIGNS and d.in_model
    }
    assert vitals == {
        ObservationKey.SPO2,
        ObservationKey.RESPIRATORY_RATE,
        ObservationKey.HEART_RATE,
        ObservationKey.TEMPERATURE,
    }


def test_icu_encounter_recognition() -> None:
    icu = {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": ENCOUNTER_CLASS_INPATIENT.as_fhir(),
        "location": [{"location": {"display": "ICU"}}],
    }
    assert is_icu_encounter(icu)
    by_type = {"class": {"code": "IMP"}, "type": [{"coding": [ICU_ENCOUNTER_TYPE.as_fhir()]}]}
    assert is_icu_encounter(by_type)
    ward = {"class": {"code": "IMP"}, "location": [{"location": {"display": "Ward 3"}}]}
    assert not is_icu_encounter(ward)
    emergency = {"class": {"code": "EMER"}, "location": [{"location": {"display": "ICU"}}]}
    assert not is_icu_encounter(emergency)
