"""Clinical codes shared by the cohort generator and the clinical feature extraction.

Every clinical concept that ctriage reads from or writes to FHIR is named here, once, with its
code system. The generator writes the *primary* coding of each concept; the feature extraction
accepts every coding listed in a value set (no terminology server is available, so value sets
are explicit code lists plus ICD-10 category prefixes instead of SNOMED CT subsumption).

Sources of the values:

- SNOMED CT concept ids: SNOMED CT International Edition (browser.ihtsdotools.org), the same
  concepts that Synthea's FHIR output and the HL7 FHIR R4 examples use for these conditions.
- ICD-10: WHO ICD-10 (2019) categories (icd.who.int/browse10), system URI
  ``http://hl7.org/fhir/sid/icd-10`` as defined by HL7 terminology (not ICD-10-CM).
- LOINC codes: loinc.org; the vital-sign codes are those required by the HL7 FHIR R4 Vital Signs
  profiles (hl7.org/fhir/R4/observation-vitalsigns.html); laboratory codes are the common
  serum/plasma/blood codes used by COVID-19 reporting.
- UCUM units: unitsofmeasure.org, the units the FHIR R4 Vital Signs profiles fix for each code.
- ``IMP`` is HL7 v3 ActCode "inpatient encounter" (the R4 Encounter.class value set);
  ``ICU`` is HL7 v3 RoleCode "intensive care unit" (the R4 ServiceDeliveryLocationRoleType set).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class CodeSystem(StrEnum):
    """Canonical URIs of the code systems ctriage uses."""

    SNOMED_CT = "http://snomed.info/sct"
    ICD_10 = "http://hl7.org/fhir/sid/icd-10"
    LOINC = "http://loinc.org"
    UCUM = "http://unitsofmeasure.org"
    V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
    OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
    CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    CONDITION_VER_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
    CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
    IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"


@dataclass(frozen=True)
class Coding:
    """One code in one code system (a FHIR ``Coding``)."""

    system: CodeSystem
    code: str
    display: str

    def as_fhir(self) -> dict[str, str]:
        """Return the FHIR R4 ``Coding`` JSON object."""
        return {"system": self.system.value, "code": self.code, "display": self.display}


class ConditionKey(StrEnum):
    """Comorbidities the risk model knows (closed list)."""

    DIABETES = "diabetes"
    HYPERTENSION = "hypertension"
    CARDIOVASCULAR = "cardiovascular"
    COPD = "copd"
    ASTHMA = "asthma"
    CKD = "ckd"
    OBESITY = "obesity"
    IMMUNOSUPPRESSION = "immunosuppression"
    CANCER = "cancer"
    SMOKING = "smoking"


def _sct(code: str, display: str) -> Coding:
    return Coding(CodeSystem.SNOMED_CT, code, display)


def _icd(code: str, display: str) -> Coding:
    return Coding(CodeSystem.ICD_10, code, display)


@dataclass(frozen=True)
class ConditionValueSet:
    """The codes that mean one comorbidity.

    ``snomed[0]`` and ``icd10[0]`` are the primary codings the generator writes. ``icd10_prefixes``
    are WHO ICD-10 categories: a code matches when, without its dot, it starts with a prefix.
    """

    key: ConditionKey
    display: str
    snomed: tuple[Coding, ...]
    icd10: tuple[Coding, ...]
    icd10_prefixes: tuple[str, ...]

    @property
    def primary_codings(self) -> tuple[Coding, Coding]:
        """The SNOMED CT and ICD-10 codings written for this condition."""
        return self.snomed[0], self.icd10[0]

    def matches(self, system: str, code: str) -> bool:
        """Whether ``system``/``code`` belongs to this value set."""
        if system == CodeSystem.SNOMED_CT:
            return any(c.code == code for c in self.snomed)
        if system == CodeSystem.ICD_10:
            bare = code.replace(".", "").upper()
            return any(bare.startswith(p.replace(".", "")) for p in self.icd10_prefixes)
        return False


CONDITION_VALUE_SETS: MappingProxyType[ConditionKey, ConditionValueSet] = MappingProxyType(
    {
        vs.key: vs
        for vs in (
            ConditionValueSet(
                ConditionKey.DIABETES,
                "Diabetes mellitus",
                (
                    _sct("44054006", "Diabetes mellitus type 2"),
                    _sct("46635009", "Diabetes mellitus type 1"),
                    _sct("73211009", "Diabetes mellitus"),
                ),
                (_icd("E11.9", "Type 2 diabetes mellitus without complications"),),
                ("E10", "E11", "E12", "E13", "E14"),
            ),
            ConditionValueSet(
                ConditionKey.HYPERTENSION,
                "Hypertension",
                (
                    _sct("38341003", "Hypertensive disorder, systemic arterial"),
                    _sct("59621000", "Essential hypertension"),
                ),
                (_icd("I10", "Essential (primary) hypertension"),),
                ("I10", "I11", "I12", "I13", "I15"),
            ),
            ConditionValueSet(
                ConditionKey.CARDIOVASCULAR,
                "Cardiovascular disease",
                (
                    _sct("53741008", "Coronary arteriosclerosis"),
                    _sct("414545008", "Ischemic heart disease"),
                    _sct("84114007", "Heart failure"),
                    _sct("22298006", "Myocardial infarction"),
                    _sct("49436004", "Atrial fibrillation"),
                    _sct("49601007", "Disorder of cardiovascular system"),
                ),
                (_icd("I25.1", "Atherosclerotic heart disease"),),
                ("I20", "I21", "I22", "I23", "I24", "I25", "I48", "I50"),
            ),
            ConditionValueSet(
                ConditionKey.COPD,
                "Chronic obstructive pulmonary disease",
                (
                    _sct("13645005", "Chronic obstructive lung disease"),
                    _sct("185086009", "Chronic obstructive bronchitis"),
                    _sct("87433001", "Pulmonary emphysema"),
                ),
                (_icd("J44.9", "Chronic obstructive pulmonary disease, unspecified"),),
                ("J43", "J44"),
            ),
            ConditionValueSet(
                ConditionKey.ASTHMA,
                "Asthma",
                (_sct("195967001", "Asthma"),),
                (_icd("J45.9", "Asthma, unspecified"),),
                ("J45", "J46"),
            ),
            ConditionValueSet(
                ConditionKey.CKD,
                "Chronic kidney disease",
                (
                    _sct("709044004", "Chronic kidney disease"),
                    _sct("433144002", "Chronic kidney disease stage 3"),
                    _sct("46177005", "End-stage renal disease"),
                ),
                (_icd("N18.9", "Chronic kidney disease, unspecified"),),
                ("N18",),
            ),
            ConditionValueSet(
                ConditionKey.OBESITY,
                "Obesity",
                (
                    _sct("414916001", "Obesity"),
                    _sct("238136002", "Morbid obesity"),
                ),
                (_icd("E66.9", "Obesity, unspecified"),),
                ("E66",),
            ),
            ConditionValueSet(
                ConditionKey.IMMUNOSUPPRESSION,
                "Immunosuppression",
                (
                    _sct("370388006", "Patient immunocompromised"),
                    _sct("234532001", "Immunodeficiency disorder"),
                    _sct("86406008", "Human immunodeficiency virus infection"),
                ),
                (_icd("D84.9", "Immunodeficiency, unspecified"),),
                ("D80", "D81", "D82", "D83", "D84", "B20", "B21", "B22", "B23", "B24"),
            ),
            ConditionValueSet(
                ConditionKey.CANCER,
                "Malignant neoplasm",
                (
                    _sct("363346000", "Malignant neoplastic disease"),
                    _sct("254637007", "Non-small cell lung cancer"),
                    _sct("254837009", "Malignant neoplasm of breast"),
                ),
                (_icd("C80.9", "Malignant neoplasm, primary site unspecified"),),
                ("C",),
            ),
            ConditionValueSet(
                ConditionKey.SMOKING,
                "Tobacco smoking",
                (
                    _sct("77176002", "Smoker"),
                    _sct("65568007", "Cigarette smoker"),
                    _sct("449868002", "Smokes tobacco daily"),
                ),
                (_icd("Z72.0", "Tobacco use"), _icd("F17.2", "Tobacco dependence syndrome")),
                ("F17", "Z72.0"),
            ),
        )
    }
)


def condition_key_for(system: str, code: str) -> ConditionKey | None:
    """Return the comorbidity that ``system``/``code`` codes, or ``None`` if none does."""
    for vs in CONDITION_VALUE_SETS.values():
        if vs.matches(system, code):
            return vs.key
    return None


class ObservationKey(StrEnum):
    """Vital signs and laboratory results the risk model knows (closed list)."""

    SPO2 = "spo2"
    RESPIRATORY_RATE = "respiratory_rate"
    HEART_RATE = "heart_rate"
    TEMPERATURE = "temperature"
    CRP = "crp"
    D_DIMER = "d_dimer"
    LYMPHOCYTES = "lymphocytes"
    LDH = "ldh"


class ObservationCategory(StrEnum):
    """FHIR R4 observation-category codes used here."""

    VITAL_SIGNS = "vital-signs"
    LABORATORY = "laboratory"

    @property
    def coding(self) -> Coding:
        """The category as a FHIR coding."""
        display = "Vital Signs" if self is ObservationCategory.VITAL_SIGNS else "Laboratory"
        return Coding(CodeSystem.OBSERVATION_CATEGORY, self.value, display)


@dataclass(frozen=True)
class ObservationDefinition:
    """LOINC codes, UCUM unit and plausible range of one observation.

    ``loinc[0]`` is the primary code; every code in ``loinc`` is accepted on input and the
    generator writes all of them (the R4 oxygen-saturation profile wants both SpO2 codes).
    Values outside ``[plausible_min, plausible_max]`` (in ``unit``) are data errors.
    """

    key: ObservationKey
    loinc: tuple[Coding, ...]
    unit: str
    category: ObservationCategory
    plausible_min: float
    plausible_max: float

    @property
    def unit_coding(self) -> Coding:
        """The UCUM unit as a coding (``valueQuantity.system``/``code``)."""
        return Coding(CodeSystem.UCUM, self.unit, self.unit)

    def matches(self, system: str, code: str) -> bool:
        """Whether ``system``/``code`` is one of this observation's LOINC codes."""
        return system == CodeSystem.LOINC and any(c.code == code for c in self.loinc)


def _loinc(code: str, display: str) -> Coding:
    return Coding(CodeSystem.LOINC, code, display)


_VITAL = ObservationCategory.VITAL_SIGNS
_LAB = ObservationCategory.LABORATORY

OBSERVATION_DEFINITIONS: MappingProxyType[ObservationKey, ObservationDefinition] = MappingProxyType(
    {
        d.key: d
        for d in (
            ObservationDefinition(
                ObservationKey.SPO2,
                (
                    _loinc("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
                    _loinc("2708-6", "Oxygen saturation in Arterial blood"),
                ),
                unit="%",
                category=_VITAL,
                plausible_min=40.0,
                plausible_max=100.0,
            ),
            ObservationDefinition(
                ObservationKey.RESPIRATORY_RATE,
                (_loinc("9279-1", "Respiratory rate"),),
                unit="/min",
                category=_VITAL,
                plausible_min=4.0,
                plausible_max=70.0,
            ),
            ObservationDefinition(
                ObservationKey.HEART_RATE,
                (_loinc("8867-4", "Heart rate"),),
                unit="/min",
                category=_VITAL,
                plausible_min=20.0,
                plausible_max=250.0,
            ),
            ObservationDefinition(
                ObservationKey.TEMPERATURE,
                (_loinc("8310-5", "Body temperature"),),
                unit="Cel",
                category=_VITAL,
                plausible_min=30.0,
                plausible_max=43.5,
            ),
            ObservationDefinition(
                ObservationKey.CRP,
                (_loinc("1988-5", "C reactive protein [Mass/volume] in Serum or Plasma"),),
                unit="mg/L",
                category=_LAB,
                plausible_min=0.0,
                plausible_max=700.0,
            ),
            ObservationDefinition(
                ObservationKey.D_DIMER,
                (_loinc("48065-7", "Fibrin D-dimer FEU [Mass/volume] in Platelet poor plasma"),),
                unit="ng/mL{FEU}",
                category=_LAB,
                plausible_min=0.0,
                plausible_max=100000.0,
            ),
            ObservationDefinition(
                ObservationKey.LYMPHOCYTES,
                (_loinc("731-0", "Lymphocytes [#/volume] in Blood by Automated count"),),
                unit="10*3/uL",
                category=_LAB,
                plausible_min=0.0,
                plausible_max=100.0,
            ),
            ObservationDefinition(
                ObservationKey.LDH,
                (
                    _loinc(
                        "2532-0",
                        "Lactate dehydrogenase [Enzymatic activity/volume] in Serum or Plasma",
                    ),
                ),
                unit="U/L",
                category=_LAB,
                plausible_min=10.0,
                plausible_max=10000.0,
            ),
        )
    }
)


def observation_key_for(system: str, code: str) -> ObservationKey | None:
    """Return the observation that ``system``/``code`` codes, or ``None`` if none does."""
    for d in OBSERVATION_DEFINITIONS.values():
        if d.matches(system, code):
            return d.key
    return None


# --- ICU encounters (the census of pre-existing ICU occupants) -----------------------------

ENCOUNTER_CLASS_INPATIENT = Coding(CodeSystem.V3_ACT_CODE, "IMP", "inpatient encounter")
"""Encounter.class of a hospital stay (HL7 v3 ActCode, R4 v3-ActEncounterCode value set)."""

ICU_LOCATION_TYPE = Coding(CodeSystem.V3_ROLE_CODE, "ICU", "Intensive care unit")
"""Location.type of an ICU (HL7 v3 RoleCode, R4 ServiceDeliveryLocationRoleType value set)."""

ICU_ENCOUNTER_TYPE = Coding(CodeSystem.SNOMED_CT, "305351004", "Admission to intensive care unit")
"""Encounter.type of an ICU stay (SNOMED CT procedure)."""

ICU_LOCATION_DISPLAY = "ICU"
"""Encounter.location[].location.display of an ICU stay, for readers without the Location."""


def is_icu_encounter(encounter: dict[str, Any]) -> bool:
    """Whether a FHIR R4 Encounter JSON object is an inpatient stay in an ICU.

    True when ``class`` is IMP and either ``type`` carries the ICU admission code or a location
    is displayed as ICU (HL7 v3 RoleCode ``ICU``).
    """
    klass = encounter.get("class") or {}
    if klass.get("code") != ENCOUNTER_CLASS_INPATIENT.code:
        return False
    for concept in encounter.get("type") or []:
        for coding in concept.get("coding") or []:
            if (coding.get("system"), coding.get("code")) == (
                ICU_ENCOUNTER_TYPE.system.value,
                ICU_ENCOUNTER_TYPE.code,
            ):
                return True
    for loc in encounter.get("location") or []:
        display = ((loc.get("location") or {}).get("display") or "").strip().upper()
        if display in {ICU_LOCATION_DISPLAY, ICU_LOCATION_TYPE.code}:
            return True
    return False
