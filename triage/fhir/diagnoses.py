"""Diagnoses of the current illness that the risk model uses (pneumonia), as value sets.

Comorbidities (:class:`triage.codes.ConditionKey`) are the patient's standing problems; a
diagnosis here belongs to the illness that brings the patient to the CT and is often made with or
after it. Both arrive as FHIR Conditions and go through the same extraction
(:class:`triage.features.ClinicalContext`): statuses, onset and abatement honoured alike. The
value sets are data (``triage/valuesets/diagnoses.json``, sources listed there): explicit SNOMED
CT lists and WHO ICD-10 category prefixes, like the comorbidities.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType

from triage.fhir.codes import CodedValueSet, coded_value_sets, load_valueset_file


class DiagnosisKey(StrEnum):
    """Diagnoses of the current illness the risk model knows (closed list)."""

    PNEUMONIA = "pneumonia"


DiagnosisValueSet = CodedValueSet[DiagnosisKey]

DIAGNOSIS_VALUE_SETS: MappingProxyType[DiagnosisKey, DiagnosisValueSet] = coded_value_sets(
    load_valueset_file("diagnoses.json")["diagnoses"], DiagnosisKey
)
"""Diagnosis value sets, from ``triage/valuesets/diagnoses.json`` (sources listed there)."""


def diagnosis_key_for(system: str, code: str) -> DiagnosisKey | None:
    """Return the diagnosis that ``system``/``code`` codes, or ``None`` if none does."""
    for vs in DIAGNOSIS_VALUE_SETS.values():
        if vs.matches(system, code):
            return vs.key
    return None
