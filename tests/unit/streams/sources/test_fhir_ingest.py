"""FHIR ingress: Synthea bundles ingest completely, counts by type, typed dead letters, privacy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streams.sources.fhir_ingest import CollectingSink, FhirIngress
from streams.sources.fhir_report import report_lines
from streams.sources.quarantine import Quarantine
from triage.fhir.parse import FhirVersionValues
from triage.fhir.pseudonym import Pseudonymiser

pytestmark = pytest.mark.unit

PSEUDO = Pseudonymiser(b"test-key", "k9")


def ingress(tmp_path: Path | None = None) -> tuple[FhirIngress, CollectingSink]:
    sink = CollectingSink()
    held = Quarantine(tmp_path) if tmp_path is not None else None
    return FhirIngress(PSEUDO, "h1", sink, "test", quarantine=held), sink


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
        # the position inside the input; the input's name stays at ingress (it may name the
        # patient, as Synthea's files do)
        assert issue["expression"][0].startswith("line ")
        assert "Obs.ndjson" not in letter.model_dump_json()
        assert "raw-42" not in letter.payload and "Zzyzx" not in letter.payload
        assert letter.source_topic == "test" and not letter.error.startswith(letter.reason_code)
    assert [r.location for r in report.rejections] == ["Obs.ndjson:line 2", "Obs.ndjson:line 3"]
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


def test_counts_add_up_with_unreadable_files_and_non_resources(tmp_path: Path) -> None:
    """received = used + ignored + rejected, per row and in total, unreadable parts included."""
    folder = tmp_path / "in"
    folder.mkdir()
    patient = {"resourceType": "Patient", "id": "raw-1", "birthDate": "1950-01-02"}
    (folder / "Patient.ndjson").write_text(f"{json.dumps(patient)}\n{{oops\n[1, 2]\n")
    (folder / "broken.json").write_bytes(b"\xff\xfe not json")
    (folder / "list.json").write_text("[]")
    (folder / "claim.json").write_text(json.dumps({"resourceType": "Claim"}))  # invalid Claim
    (folder / "org.json").write_text(json.dumps({"resourceType": "Organization", "id": "o"}))
    ing, sink = ingress(tmp_path / "quarantine")
    report = ing.ingest_path(folder)
    report.merge(ing.ingest_path(tmp_path / "gone.json"))  # vanished before it could be read
    rows = {rtype: c for rtype, c in report.counts.items()}
    for rtype, c in rows.items():
        assert c.received == c.used + c.ignored + c.rejected, rtype
    assert report.received == report.used + report.ignored + report.rejected == 8
    assert report.rejected == len(report.rejections) == len(sink.dead_letters)
    reasons = sorted(r.reason for r in report.rejections)
    assert reasons == [
        "invalid_json",  # {oops
        "invalid_json",  # not UTF-8
        "not_a_resource",  # [1, 2]
        "not_a_resource",  # []
        "unreadable_file",
        "validation_failed",  # the Claim
    ]
    assert rows["Patient"].used == 1 and rows["Organization"].ignored == 1
    assert rows["(unreadable)"].rejected == 3 and rows["(not a resource)"].rejected == 2
    table = report_lines(report)
    total = next(line for line in table if line.startswith("total"))
    assert total.split()[1:] == [
        str(report.received),
        str(report.used),
        str(report.ignored),
        str(report.rejected),
    ]
    assert len([line for line in table if line.startswith("rejected  ")]) == report.rejected


def test_r5_primitive_extension_is_accepted_and_kept(tmp_path: Path) -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/raw-1"},
        "effectiveDateTime": "2024-03-01T10:00:00Z",
        "valueQuantity": {"value": 88, "system": "http://unitsofmeasure.org", "code": "/min"},
        "extension": [
            {
                "url": "http://example.org/fhir/StructureDefinition/device-class",
                "valueCode": "monitor",
                "_valueCode": {
                    "extension": [
                        {
                            "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                            "valueCode": "unknown",
                        }
                    ]
                },
            }
        ],
    }
    ing, sink = ingress(tmp_path)
    for version in FhirVersionValues:
        report = ing.ingest_json(json.dumps(observation), version)
        assert report.used == 1, report.rejections
    assert "_valueCode" in sink.events[-1].resource["extension"][0]
    assert not list(tmp_path.iterdir())  # nothing rejected, nothing quarantined


def test_dead_letter_log_line_says_each_thing_once(caplog: pytest.LogCaptureFixture) -> None:
    ing, sink = ingress()
    code_system = {"resourceType": "CodeSystem", "status": 42, "content": "complete"}
    with caplog.at_level("WARNING", logger="streams.dlq"):
        report = ing.ingest_json(json.dumps(code_system), origin="Smith_John_raw-77.json")
    (rejection,) = report.rejections
    (line,) = [r.getMessage() for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert "None" not in line  # no "@None/None" for an input that has no partition or offset
    assert line.count(rejection.reason) == 1
    assert "Smith" not in line and "raw-77" not in line
    assert line.startswith("dead-lettered test at fhir_ingress: validation_failed (CodeSystem: ")


def test_r5_hint_names_the_option_of_the_channel() -> None:
    sink = CollectingSink()
    ing = FhirIngress(PSEUDO, "h1", sink, "cli", r5_hint="run with --fhir-version 5.0")
    transport = {"resourceType": "Transport", "status": "completed", "intent": "order"}
    (rejection,) = ing.ingest_json(json.dumps(transport)).rejections
    assert rejection.reason == "r5_content_as_r4"
    assert rejection.detail.endswith("(run with --fhir-version 5.0)")
