"""Store sinks of issue 16: treatments from fhir.resources, change columns of a risk row."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from dashboards import create_schema, make_engine, patient_treatments
from dashboards.store import treatments
from streams.agents.sinks import change_columns, write_treatment
from streams.records import BurdenChange, FhirResourceEvent

pytestmark = pytest.mark.unit

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def _event(resource: dict, version: str = "4.0") -> FhirResourceEvent:
    return FhirResourceEvent(
        event_id="e1", patient_pseudonym="k1-abc", resource_type=resource["resourceType"],
        resource=resource, source="test", event_time="2020-11-03T00:00:00+00:00",
        published_at=0.0, hospital="h", fhir_version=version,
    )  # fmt: skip


def test_treatments_are_upserted_and_other_resources_ignored(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.sqlite'}")
    create_schema(engine)
    request = {
        "resourceType": "MedicationRequest", "id": "r1", "status": "active", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "3264"}]},
        "subject": {"reference": "Patient/k1-abc"}, "authoredOn": "2020-11-02T10:00:00Z",
    }  # fmt: skip
    write_treatment(engine, _event(request))
    write_treatment(engine, _event({**request, "status": "stopped"}))  # same resource: one row
    write_treatment(engine, _event({"resourceType": "Patient", "id": "k1-abc"}))
    with engine.connect() as conn:
        rows = patient_treatments(conn, "k1-abc")
        assert len(conn.execute(select(treatments)).all()) == 1  # the Patient added nothing
    assert [(r["drug"], r["treatment_class"], r["status"], r["given"]) for r in rows] == [
        ("dexamethasone", "corticosteroid", "stopped", True)
    ]
    engine.dispose()


def test_change_columns_since_prior_and_none() -> None:
    change = BurdenChange(
        since_study_uid="1.1", since_time="2020-11-02T08:00:00+00:00", interval_days=3.0,
        lesion_from_percent=12.0, lesion_points=19.0, lesion_points_per_day=19.0 / 3,
    )  # fmt: skip
    columns = change_columns("prior", change)
    assert columns["prior_study_uid"] == "1.1"
    assert columns["lesion_change_prior_points"] == 19.0
    assert columns["interval_prior_days"] == 3.0
    assert columns["severity_change_prior_points"] is None
    assert set(change_columns("first", None).values()) == {None}
