"""Clinical codes shared by the cohort generator and the clinical feature extraction.

Every clinical concept that ctriage reads from or writes to FHIR is named here, once, with its
code system. The value sets themselves are data files in ``triage/valuesets/`` (conditions,
observations with their UCUM conversions and plausible ranges), each naming its sources; this
module loads them once. The generator writes the *primary* coding of each concept; the feature
extraction accepts every coding listed in a value set (no terminology server is available, so
value sets are explicit code lists plus ICD-10 category prefixes instead of SNOMED CT subsumption).

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

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from types import MappingProxyType
from typing import Any, Generic, TypeVar


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


K = TypeVar("K", bound=StrEnum)


@dataclass(frozen=True)
class CodedValueSet(Generic[K]):
    """The codes that mean one condition (a comorbidity, or a diagnosis of the current illness).

    ``snomed[0]`` and ``icd10[0]`` are the primary codings the generator writes. ``icd10_prefixes``
    are WHO ICD-10 categories: a code matches when, without its dot, it starts with a prefix.
    """

    key: K
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


ConditionValueSet = CodedValueSet[ConditionKey]


def load_valueset_file(name: str) -> dict[str, Any]:
    """Read a value-set data file shipped in ``triage/valuesets/``."""
    text = resources.files("triage.fhir.valuesets").joinpath(name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def coded_value_sets(
    rows: list[dict[str, Any]], key_type: type[K]
) -> MappingProxyType[K, CodedValueSet[K]]:
    """Value sets from rows of ``key``, ``display``, ``snomed``, ``icd10``, ``icd10_prefixes``."""
    return MappingProxyType(
        {
            key_type(row["key"]): CodedValueSet(
                key_type(row["key"]),
                row["display"],
                tuple(_sct(code, display) for code, display in row["snomed"]),
                tuple(_icd(code, display) for code, display in row["icd10"]),
                tuple(row["icd10_prefixes"]),
            )
            for row in rows
        }
    )


_CONDITIONS_FILE = load_valueset_file("conditions.json")
CONDITION_VALUE_SETS: MappingProxyType[ConditionKey, ConditionValueSet] = coded_value_sets(
    _CONDITIONS_FILE["conditions"], ConditionKey
)
"""Comorbidity value sets, from ``triage/valuesets/conditions.json`` (sources listed there)."""

STATUS_OBSERVATIONS: MappingProxyType[str, ConditionKey] = MappingProxyType(
    {
        row["loinc"]: ConditionKey(row["condition"])
        for row in _CONDITIONS_FILE["status_observations"]
    }
)
"""LOINC codes of Observations whose coded value states a condition (e.g. smoking status)."""


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
    O2_FLOW = "o2_flow"
    FIO2 = "fio2"
    SYSTOLIC_BP = "systolic_bp"
    DIASTOLIC_BP = "diastolic_bp"
    BMI = "bmi"
    WEIGHT = "weight"
    HEIGHT = "height"
    FERRITIN = "ferritin"
    CREATININE = "creatinine"
    UREA_NITROGEN = "urea_nitrogen"
    PLATELETS = "platelets"
    TROPONIN = "troponin"


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
    ``conversions`` maps each accepted UCUM code to ``(scale, offset)`` into ``unit``;
    ``feature`` names the feature and ``in_model`` says whether the risk model scores it.
    """

    key: ObservationKey
    loinc: tuple[Coding, ...]
    unit: str
    category: ObservationCategory
    plausible_min: float
    plausible_max: float
    feature: str = ""
    in_model: bool = False
    conversions: Mapping[str, tuple[float, float]] = field(default_factory=dict)

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


def _observation_definitions(data: dict[str, Any]) -> dict[ObservationKey, ObservationDefinition]:
    definitions = {}
    for row in data["observations"]:
        key = ObservationKey(row["key"])
        low, high = row["plausible"]
        definitions[key] = ObservationDefinition(
            key,
            tuple(_loinc(code, display) for code, display in row["loinc"]),
            unit=row["unit"],
            category=ObservationCategory(row["category"]),
            plausible_min=float(low),
            plausible_max=float(high),
            feature=row["feature"],
            in_model=bool(row["in_model"]),
            conversions=MappingProxyType(
                {unit: (float(a), float(b)) for unit, (a, b) in row["units"].items()}
            ),
        )
    return definitions


OBSERVATION_DEFINITIONS: MappingProxyType[ObservationKey, ObservationDefinition] = MappingProxyType(
    _observation_definitions(load_valueset_file("observations.json"))
)
"""Observations by LOINC code, from ``triage/valuesets/observations.json`` (sources there)."""
_LOINC_TO_KEY = {c.code: d.key for d in OBSERVATION_DEFINITIONS.values() for c in d.loinc}


def observation_key_for(system: str, code: str) -> ObservationKey | None:
    """Return the observation that ``system``/``code`` codes, or ``None`` if none does."""
    return _LOINC_TO_KEY.get(code) if system == CodeSystem.LOINC else None


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
