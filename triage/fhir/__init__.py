"""Public API of ``triage.fhir``: what other packages import (deep imports stay inside)."""

from triage.fhir.context import ClinicalContext, maps_to_context
from triage.fhir.icu import CensusChange, CensusChangeValues, census_changes
from triage.fhir.outbound import risk_assessment, threshold_audit_event
from triage.fhir.parse import (
    FhirVersionValues,
    ParsedResource,
    ParseFailure,
    declared_version,
    iter_ndjson,
    iter_resources,
    load_json,
    normalise_r5,
    validate_resource,
    version_from_content_type,
)
from triage.fhir.pseudonym import (
    Pseudonymiser,
    bundle_patient_urls,
    patient_key,
    pseudonymise_resource,
)
from triage.fhir.treatments import (
    TREATMENT_DEFINITIONS,
    Treatment,
    TreatmentClassValues,
    inline_medications,
    treatment_of,
)

__all__ = [
    "CensusChange",
    "CensusChangeValues",
    "ClinicalContext",
    "FhirVersionValues",
    "TREATMENT_DEFINITIONS",
    "Treatment",
    "TreatmentClassValues",
    "ParseFailure",
    "ParsedResource",
    "Pseudonymiser",
    "bundle_patient_urls",
    "census_changes",
    "declared_version",
    "iter_ndjson",
    "inline_medications",
    "iter_resources",
    "load_json",
    "maps_to_context",
    "normalise_r5",
    "patient_key",
    "pseudonymise_resource",
    "risk_assessment",
    "threshold_audit_event",
    "treatment_of",
    "validate_resource",
    "version_from_content_type",
]
