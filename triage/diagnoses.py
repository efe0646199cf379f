"""Diagnoses of the current illness that the risk model uses (pneumonia), as value sets.

Comorbidities (:class:`triage.codes.ConditionKey`) are the patient's standing problems; a
diagnosis here belongs to the illness that brings the patient to the CT and is often made with or
after it. Both arrive as FHIR Conditions and go through the same extraction
(:class:`triage.features.ClinicalContext`): statuses, onset and abatement honoured alike. The
value sets are data (``triage/valuesets/diagnoses.json``, sources listed there): explicit SNOMED
CT lists and WHO ICD-10 category prefixes, like the comorbidities.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from types import MappingProxyType
from typing import Any

from triage.codes import CodeSystem, Coding


class DiagnosisKey(StrEnum):
    """Diagnoses of the current illness the risk model knows (closed list)."""

    PNEUMONIA = "pneumonia"


@dataclass(frozen=True)
class DiagnosisValueSet:
    """The codes that mean one diagnosis; ``snomed[0]`` and ``icd10[0]`` are written."""

    key: DiagnosisKey
    display: str
    snomed: tuple[Coding, ...]
    icd10: tuple[Coding, ...]
    icd10_prefixes: tuple[str, ...]

    @property
    def primary_codings(self) -> tuple[Coding, Coding]:
        """The SNOMED CT and ICD-10 codings the cohort generator writes."""
        return self.snomed[0], self.icd10[0]

    def matches(self, system: str, code: str) -> bool:
        """Whether ``system``/``code`` belongs to this value set (ICD-10: prefix, dot ignored)."""
        if system == CodeSystem.SNOMED_CT:
            return any(c.code == code for c in self.snomed)
        if system == CodeSystem.ICD_10:
            bare = code.replace(".", "").upper()
            return any(bare.startswith(p.replace(".", "")) for p in self.icd10_prefixes)
        return False


def _value_sets() -> dict[DiagnosisKey, DiagnosisValueSet]:
    text = resources.files("triage.valuesets").joinpath("diagnoses.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return {
        DiagnosisKey(row["key"]): DiagnosisValueSet(
            DiagnosisKey(row["key"]),
            row["display"],
            tuple(Coding(CodeSystem.SNOMED_CT, c, d) for c, d in row["snomed"]),
            tuple(Coding(CodeSystem.ICD_10, c, d) for c, d in row["icd10"]),
            tuple(row["icd10_prefixes"]),
        )
        for row in data["diagnoses"]
    }


DIAGNOSIS_VALUE_SETS: MappingProxyType[DiagnosisKey, DiagnosisValueSet] = MappingProxyType(
    _value_sets()
)
"""Diagnosis value sets, from ``triage/valuesets/diagnoses.json`` (sources listed there)."""


def diagnosis_key_for(system: str, code: str) -> DiagnosisKey | None:
    """Return the diagnosis that ``system``/``code`` codes, or ``None`` if none does."""
    for vs in DIAGNOSIS_VALUE_SETS.values():
        if vs.matches(system, code):
            return vs.key
    return None
