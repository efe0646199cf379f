"""COVID-19 treatments from FHIR MedicationRequest / MedicationAdministration (R4 and R5).

The drugs and their RxNorm and ATC codes are data (``triage/fhir/valuesets/treatments.json``,
sources named there). A resource names its drug by ``medicationCodeableConcept`` (R4),
``medication.concept`` (R5), or a reference (R4 ``medicationReference``, R5
``medication.reference``) to a Medication contained in the resource (``#id``) or inlined at
ingress (:func:`inline_medications`). Downstream ctriage keeps only the drug, its class, the
start time and the status (:class:`Treatment`): never doses, prescribers or notes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from triage.exceptions import FhirRejected, FhirRejectionReason
from triage.fhir.codes import load_valueset_file
from triage.fhir.readers import iso_utc, resource_key

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
TREATMENT_RESOURCES = frozenset({"MedicationRequest", "MedicationAdministration"})
#: statuses of a request or administration that never reached the patient (or were withdrawn)
NOT_GIVEN_STATUSES = frozenset({"cancelled", "entered-in-error", "draft", "not-done"})


class TreatmentClassValues(StrEnum):
    """Treatment classes (closed list; one export column each)."""

    CORTICOSTEROID = "corticosteroid"
    REMDESIVIR = "remdesivir"
    IL6_INHIBITOR = "il6_inhibitor"
    JAK_INHIBITOR = "jak_inhibitor"
    ORAL_ANTIVIRAL = "oral_antiviral"
    ANTI_SPIKE_ANTIBODY = "anti_spike_antibody"


@dataclass(frozen=True)
class TreatmentDefinition:
    """One drug: its key, class and the RxNorm and ATC codes that mean it."""

    key: str
    treatment_class: TreatmentClassValues
    display: str
    rxnorm: tuple[tuple[str, str], ...]
    atc: tuple[tuple[str, str], ...]

    def matches(self, system: str, code: str) -> bool:
        """Whether ``system``/``code`` codes this drug."""
        if system == RXNORM:
            return any(c == code for c, _ in self.rxnorm)
        if system == ATC:
            return any(c == code.upper() for c, _ in self.atc)
        return False


def _definitions(data: dict[str, Any]) -> MappingProxyType[str, TreatmentDefinition]:
    return MappingProxyType(
        {
            row["key"]: TreatmentDefinition(
                key=row["key"],
                treatment_class=TreatmentClassValues(row["class"]),
                display=row["display"],
                rxnorm=tuple((str(c), str(d)) for c, d in row["rxnorm"]),
                atc=tuple((str(c), str(d)) for c, d in row["atc"]),
            )
            for row in data["treatments"]
        }
    )


TREATMENT_DEFINITIONS = _definitions(load_valueset_file("treatments.json"))
"""Drugs by key, from ``triage/fhir/valuesets/treatments.json`` (sources listed there)."""


def treatment_for(system: str, code: str) -> TreatmentDefinition | None:
    """The drug that ``system``/``code`` codes, or ``None``."""
    for definition in TREATMENT_DEFINITIONS.values():
        if definition.matches(system, code):
            return definition
    return None


@dataclass(frozen=True)
class Treatment:
    """One coded treatment of a patient: what ctriage keeps of a medication resource."""

    record_id: str  # the resource's id (a hash of its content without one)
    drug: str
    treatment_class: TreatmentClassValues
    started_at: str  # ISO UTC
    status: str
    source: str  # MedicationRequest | MedicationAdministration

    @property
    def given(self) -> bool:
        """Whether it counts as a treatment the patient had (not cancelled, draft, in error)."""
        return self.status not in NOT_GIVEN_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe."""
        return asdict(self) | {"treatment_class": self.treatment_class.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Treatment:
        """Back from :meth:`to_dict`."""
        return cls(
            **{**dict(data), "treatment_class": TreatmentClassValues(data["treatment_class"])}
        )


def medication_concept(resource: Mapping[str, Any]) -> dict[str, Any] | None:
    """The CodeableConcept naming the drug, in R4 or R5 shape; contained Medications resolved."""
    concept = resource.get("medicationCodeableConcept")
    reference = resource.get("medicationReference")
    medication = resource.get("medication")
    if isinstance(medication, dict):  # R5: CodeableReference
        concept = concept or medication.get("concept")
        reference = reference or medication.get("reference")
    if isinstance(concept, dict):
        return concept
    if isinstance(reference, dict) and str(reference.get("reference", "")).startswith("#"):
        wanted = str(reference["reference"])[1:]
        for contained in resource.get("contained") or []:
            if contained.get("resourceType") == "Medication" and contained.get("id") == wanted:
                code = contained.get("code")
                return code if isinstance(code, dict) else None
    return None


def drug_of(resource: Mapping[str, Any]) -> TreatmentDefinition | None:
    """The known drug of a medication resource (None: not a COVID-19 treatment we know)."""
    concept = medication_concept(resource)
    for coding in (concept or {}).get("coding") or []:
        found = treatment_for(str(coding.get("system", "")), str(coding.get("code", "")))
        if found is not None:
            return found
    return None


def _start(resource: Mapping[str, Any]) -> Any:
    if resource.get("resourceType") == "MedicationAdministration":
        for name in ("effectiveDateTime", "occurenceDateTime", "occurrenceDateTime"):
            if resource.get(name):
                return resource[name]
        for name in ("effectivePeriod", "occurencePeriod", "occurrencePeriod"):
            period = resource.get(name)
            if isinstance(period, dict) and period.get("start"):
                return period["start"]
        return None
    for dosage in resource.get("dosageInstruction") or []:
        bounds = ((dosage.get("timing") or {}).get("repeat") or {}).get("boundsPeriod") or {}
        if bounds.get("start"):
            return bounds["start"]
    return resource.get("authoredOn")


def treatment_of(resource: Mapping[str, Any]) -> Treatment | None:
    """The treatment a MedicationRequest / MedicationAdministration records, or ``None``.

    ``None`` for other resources and for drugs outside the value set. The start is when the
    administration happened (R4 ``effective[x]``, R5 ``occurence[x]``) or, for a request, the
    start of its dosage bounds, else ``authoredOn``. A known drug without a readable start is
    rejected (:class:`FhirRejected`): a treatment without a time cannot be placed on a timeline.
    """
    rtype = resource.get("resourceType")
    if rtype not in TREATMENT_RESOURCES:
        return None
    drug = drug_of(resource)
    if drug is None:
        return None
    raw = _start(resource)
    try:
        started = iso_utc(raw) if raw else None
    except ValueError:
        started = None
    if started is None:
        raise FhirRejected(
            FhirRejectionReason.VALIDATION_FAILED,
            f"{rtype} of {drug.key} has no readable start time",
            str(rtype),
            resource.get("id"),
        )
    return Treatment(
        record_id=resource_key(dict(resource)),
        drug=drug.key,
        treatment_class=drug.treatment_class,
        started_at=started,
        status=str(resource.get("status") or "unknown"),
        source=str(rtype),
    )


def inline_medications(bundle: dict[str, Any]) -> dict[str, Any]:
    """A Bundle whose medication resources carry the Medication they reference as contained.

    A MedicationRequest / MedicationAdministration may reference a Medication entry of the
    same Bundle (``Medication/<id>`` or its ``fullUrl``). The Medication names no patient, so
    it cannot travel on its own: it is copied into ``contained`` and the reference becomes
    ``#<id>``. Returns a new Bundle; other entries are untouched.
    """
    medications: dict[str, dict[str, Any]] = {}
    for entry in bundle.get("entry") or []:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType") == "Medication" and res.get("id"):
            medications[f"Medication/{res['id']}"] = res
            if entry.get("fullUrl"):
                medications[str(entry["fullUrl"])] = res
    if not medications:
        return bundle
    entries = []
    for entry in bundle.get("entry") or []:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType") in TREATMENT_RESOURCES:
            entry = {**entry, "resource": _with_contained(res, medications)}
        entries.append(entry)
    return {**bundle, "entry": entries}


def _with_contained(
    resource: dict[str, Any], medications: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    out = dict(resource)
    holder, field = (out, "medicationReference")
    if isinstance(out.get("medication"), dict):  # R5
        out["medication"] = dict(out["medication"])
        holder, field = out["medication"], "reference"
    reference = holder.get(field)
    target = medications.get(str((reference or {}).get("reference", "")))
    if target is None:
        return resource
    local = str(target["id"])
    contained = [c for c in out.get("contained") or [] if c.get("id") != local]
    out["contained"] = [*contained, dict(target)]
    holder[field] = {**(reference or {}), "reference": f"#{local}"}
    return out
