"""FHIR ingress: Synthea bundles ingest completely, counts by type, typed dead letters, privacy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streams.sources.fhir_ingest import CollectingSink, FhirIngress, report_lines
from triage.fhir.parse import FhirVersionValues
from triage.fhir.pseudonym import Pseudonymiser

pytestmark = pytest.mark.unit

PSEUDO = Pseudonymiser(b"test-key", "k9")


def ingress(tmp_path: Path | None = None) -> tuple[FhirIngress, CollectingSink]:
    sink = CollectingSink()
    return FhirIngress(PSEUDO, "h1", sink, "test", quarantine_dir=tmp_path), sink


def synthea(shared_data: Path) -> Path:
    return shared_data / "fhir" / "synthea-covid" / "bundles"


def test_synthea_bundles_ingest_completely(shared_data: Path) -> None:
    ing, sink = ingress()
    report = ing.ingest_path(synthea(shared_data))
    received = {rtype: c.received for rtype, c in report.counts.items()}
    entries = 0
    for path in synthea(shared_data).glob("*.json"):
        entries += len(json.loads(path.read_text())["entry"])
    assert sum(received.values()) == entries == 1000
    assert report.rejections == []
    for rtype, c in report.counts.items():
        assert c.received == c.used + c.ignored + c.rejected, rtype
    assert report.counts["Patient"].used == 10
    # Synthea's vital signs (temperature, RR, HR, SpO2, BP panel, weight) per COVID encounter
    assert report.counts["Observation"].used == 54
    assert report.counts["Claim"].ignored == report.counts["Claim"].received
    assert len(sink.events) == report.used
    assert {e.resource_type for e in sink.events} == {"Patient", "Observation"}
    assert len({e.patient_pseudonym for e in sink.events}) == 10
    assert "total" in report_lines(report)[-1]


def test_synthea_identifiers_never_leave_ingress(shared_data: Path) -> None:
    canaries: set[str] = set()
    for path in synthea(shared_data).glob("*.json"):
        for entry in json.loads(path.read_text())["entry"]:
            res = entry["resource"]
            if res["resourceType"] == "Patient":
                canaries |= {res["id"], json.dumps(res["birthDate"])}
                canaries |= {json.dumps(n["family"]) for n in res["name"]}
                canaries |= {ident["value"] for ident in res["identifier"]}
    ing, sink = ingress()
    ing.ingest_path(synthea(shared_data))
    text = "\n".join(e.to_bytes().decode() for e in sink.events)
    assert not [c for c in canaries if c in text]
    assert all(e.patient_pseudonym.startswith("k9-") for e in sink.events)


def test_rejections_are_typed_dead_letters_with_operation_outcome(tmp_path: Path) -> None:
    patient = {"resourceType": "Patient", "id": "raw-42", "name": [{"family": "Zzyzx"}]}
    hot = {
        "resourceType": "Observation",
        "status": "final",
        "subject": {"reference": "Patient/raw-42"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        "effectiveDateTime": "2024-03-01T10:00:00Z",
        "valueQuantity": {"value": 95, "system": "http://unitsofmeasure.org", "code": "Cel"},
    }
    ndjson = "\n".join([json.dumps(patient), "{oops", json.dumps(hot)])
    ing, sink = ingress(tmp_path)
    report = ing.ingest_ndjson(ndjson, origin="Obs.ndjson")
    assert report.counts["Patient"].used == 1
    assert sorted(r.reason for r in report.rejections) == ["implausible_value", "invalid_json"]
    assert len(sink.dead_letters) == 2
    for letter in sink.dead_letters:
        payload = json.loads(letter.payload)
        (issue,) = payload["operationOutcome"]["issue"]
        assert issue["details"]["coding"][0]["code"] == letter.reason_code
        assert issue["expression"][0].startswith("Obs.ndjson:line ")
        assert "raw-42" not in letter.payload and "Zzyzx" not in letter.payload
    held = [json.loads(letter.payload)["quarantined"] for letter in sink.dead_letters]
    assert all((tmp_path / name).exists() for name in held)


def test_r5_declared_payload(tmp_path: Path) -> None:
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": [{"coding": [{"code": "IMP"}]}],
        "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "305351004"}]}],
        "subject": {"reference": "Patient/raw-7"},
        "actualPeriod": {"start": "2024-03-01T00:00:00Z"},
    }
    ing, sink = ingress()
    as_r4 = ing.ingest_json(json.dumps(encounter))
    assert [r.reason for r in as_r4.rejections] == ["r5_content_as_r4"]
    as_r5 = ing.ingest_json(json.dumps(encounter), FhirVersionValues.R5)
    assert as_r5.used == 1 and sink.events[-1].fhir_version == "5.0"


def test_unsupported_bundle_type_and_invalid_json() -> None:
    ing, sink = ingress()
    report = ing.ingest_json(b'{"resourceType": "Bundle", "type": "nonsense", "entry": []}')
    assert [r.reason for r in report.rejections] == ["unsupported_bundle_type"]
    report = ing.ingest_json(b"\xff\xfe not json")
    assert [r.reason for r in report.rejections] == ["invalid_json"]
    assert not sink.events
