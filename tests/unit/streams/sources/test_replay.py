"""The replay ingress: clinical-time ordering and pseudonymisation before anything is published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.sources.replay import ct_event, fhir_events, timeline
from triage.cohort import generate_cohort, load_manifest
from triage.fhir.pseudonym import Pseudonymiser

pytestmark = pytest.mark.unit

PSEUDONYMISER = Pseudonymiser(key=b"test-key", key_version="k9")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, n_patients=4, seed=3, matrix=32, slices=16)
    return out


def test_timeline_is_in_clinical_order_with_census_first(cohort: Path) -> None:
    items, hospital = timeline(cohort)
    assert hospital == "demo-hospital"
    assert items[0].path.name == "census.json"
    offsets = [item.offset_s for item in items]
    assert offsets == sorted(offsets)
    assert sum(item.kind == "ct" for item in items) == 4


def test_fhir_events_carry_no_identifiers(cohort: Path) -> None:
    manifest = load_manifest(cohort)
    study = manifest.studies[0]
    bundle = json.loads((cohort / study.fhir_bundle).read_text())
    patient = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    events = list(fhir_events(bundle, PSEUDONYMISER, "2020-11-02T08:00:00+00:00", "h"))
    assert events
    pseudonym = PSEUDONYMISER.patient(study.patient_id)
    assert {e.patient_pseudonym for e in events} == {pseudonym}
    wire = b"".join(e.to_bytes() for e in events).decode()
    assert patient["id"] not in wire
    assert json.dumps(patient["birthDate"]) not in wire
    assert json.dumps(patient["name"][0]["family"]) not in wire


def test_ct_event_is_a_claim_check_keyed_by_pseudonym(cohort: Path) -> None:
    items, _ = timeline(cohort)
    item = next(i for i in items if i.kind == "ct")
    event = ct_event(item, PSEUDONYMISER, "h")
    assert event.study_uri.startswith("file://")
    assert event.patient_pseudonym.startswith("k9-")
    assert item.study["patient_id"] not in event.to_bytes().decode()
