"""Store sinks of issue 16: treatments from fhir.resources, change columns of a risk row."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from dashboards import create_schema, make_engine, patient_treatments
from dashboards.store import alerts, treatments
from streams.agents.sinks import change_columns, write_alert, write_treatment
from streams.records import Alert, BurdenChange, FhirResourceEvent

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


def _alert(alert_id: str, **extra: object) -> Alert:
    fields: dict[str, object] = {"study_uid": "1.2.3", **extra}
    return Alert(
        alert_id=alert_id, risk_id="r-1", patient_pseudonym="k1-abc",
        probability=0.42, level="high", model_version="m1", threshold_version="t1",
        lesion_percent=31.0, top_features=[], completeness="complete",
        ct_time="2020-11-05T08:00:00+00:00", hospital="h", raised_at=0.0, **fields,
    )  # fmt: skip


def test_alert_rows_keep_the_line_and_the_change_the_alert_reports(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.sqlite'}")
    create_schema(engine)
    prior = BurdenChange(
        since_study_uid="1.2.2", since_time="2020-11-04T08:00:00+00:00", interval_days=1.0,
        lesion_from_percent=25.0, lesion_points=6.0,
    )  # fmt: skip
    rise = BurdenChange(
        since_study_uid="1.2.1", since_time="2020-11-02T08:00:00+00:00", interval_days=3.0,
        lesion_from_percent=12.0, lesion_points=19.0, severity_points=4.0,
    )  # fmt: skip
    write_alert(engine, _alert("first", study_uid="1.2.1"))  # a first CT: nothing to compare
    write_alert(engine, _alert("risk", change_since_prior=prior, rsna_category="typical"))
    write_alert(engine, _alert(
        "worse", kind="worsening", change_since_prior=prior, worsening_since=rise,
        worsening_reasons=["lesion_rise"], secondary_worsening=True,
    ))  # fmt: skip
    with engine.connect() as conn:
        rows = {r.alert_id: r for r in conn.execute(select(alerts))}
    engine.dispose()
    assert rows["first"].change_text is None and rows["first"].earlier_study_uid is None
    assert rows["first"].secondary_worsening is None  # not a worsening alert: not "no"
    assert rows["risk"].change_text == "was 25 % on 2020-11-04, now 31 % (+6 in 24 h)"
    assert (rows["risk"].earlier_study_uid, rows["risk"].rsna_category) == ("1.2.2", "typical")
    worse = rows["worse"]  # the change that fired the rule, not the one since the prior CT
    assert worse.change_text == "was 12 % on 2020-11-02, now 31 % (+19 in 3 days)"
    assert (worse.earlier_study_uid, worse.lesion_change_earlier_points) == ("1.2.1", 19.0)
    assert (worse.interval_earlier_days, worse.severity_change_earlier_points) == (3.0, 4.0)
    assert (worse.worsening_reasons, worse.secondary_worsening) == ("lesion_rise", True)
