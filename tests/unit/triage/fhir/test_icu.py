from datetime import UTC, datetime

import pytest

from triage.fhir.icu import (
    CensusChangeValues,
    census_candidate,
    census_changes,
    icu_change,
    ventilation_change,
)
from triage.fhir.parse import validate_resource

pytestmark = pytest.mark.unit

ICU_ENCOUNTER = {
    "resourceType": "Encounter",
    "status": "in-progress",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
    "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "305351004"}]}],
    "subject": {"reference": "Patient/k1-abc"},
    "period": {"start": "2020-11-01T10:00:00+00:00"},
}


def test_in_progress_icu_stay_is_an_admission():
    change = icu_change(ICU_ENCOUNTER)
    assert change is not None and change.admitted
    assert change.at == datetime(2020, 11, 1, 10, tzinfo=UTC)


def test_finished_icu_stay_is_a_discharge():
    done = {
        **ICU_ENCOUNTER,
        "status": "finished",
        "period": {"start": "2020-11-01T10:00:00+00:00", "end": "2020-11-05T09:00:00+00:00"},
    }
    change = icu_change(done)
    assert change is not None and not change.admitted
    assert change.at.day == 5


def test_ward_stay_and_other_resources_change_nothing():
    ward = {**ICU_ENCOUNTER, "type": [], "location": []}
    assert icu_change(ward) is None
    assert icu_change({"resourceType": "Observation"}) is None
    planned = {**ICU_ENCOUNTER, "status": "planned"}
    assert icu_change(planned) is None


# --- real-shaped FHIR R4: ward -> ICU transfer, discharge, ventilation (validated with R4B) ---

V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
SCT = "http://snomed.info/sct"


def _valid(resource: dict) -> dict:
    validate_resource(resource)  # fhir.resources.R4B: the shape hospitals send
    return resource


def transfer_encounter(status: str = "in-progress", icu_status: str = "active") -> dict:
    icu_period = {"start": "2020-11-02T14:30:00+01:00"}
    if icu_status == "completed":
        icu_period["end"] = "2020-11-06T09:00:00+01:00"
    return _valid(
        {
            "resourceType": "Encounter",
            "id": "enc-1",
            "status": status,
            "class": {"system": V3_ACT, "code": "IMP", "display": "inpatient encounter"},
            "subject": {"reference": "Patient/k1-abc"},
            "period": {"start": "2020-11-01T10:00:00+01:00"},
            "location": [
                {
                    "location": {"reference": "Location/ward-3b", "display": "Ward 3B"},
                    "status": "completed",
                    "period": {
                        "start": "2020-11-01T10:00:00+01:00",
                        "end": "2020-11-02T14:30:00+01:00",
                    },
                },
                {
                    "location": {"reference": "Location/icu-north", "display": "ICU North"},
                    "status": icu_status,
                    "period": icu_period,
                },
            ],
        }
    )


def ventilation(status: str, end: str | None = None, location: str | None = None) -> dict:
    period = {"start": "2020-11-03T02:00:00Z", **({"end": end} if end else {})}
    resource = {
        "resourceType": "Procedure",
        "id": "vent-1",
        "status": status,
        "category": {"coding": [{"system": SCT, "code": "1258985005"}]},
        "code": {
            "coding": [
                {
                    "system": SCT,
                    "code": "1258985005",
                    "display": "Invasive mechanical ventilation (regime/therapy)",
                }
            ]
        },
        "subject": {"reference": "Patient/k1-abc"},
        "performedPeriod": period,
    }
    if location:
        resource["location"] = {"reference": f"Location/{location}"}
    return _valid(resource)


def test_transfer_into_a_known_icu_location_is_an_admission_to_that_unit():
    encounter = transfer_encounter()
    # the referenced Location is an ICU only for a worker that knows it (capacity Locations)
    assert census_changes(encounter) == []
    assert census_candidate(encounter)  # so ingress passes it on
    (change,) = census_changes(encounter, frozenset({"icu-north"}))
    assert change.kind is CensusChangeValues.ICU_ADMISSION
    assert change.unit == "icu-north"
    assert change.at == datetime(2020, 11, 2, 13, 30, tzinfo=UTC)


def test_transfer_out_of_the_icu_is_a_discharge_though_the_stay_goes_on():
    (change,) = census_changes(transfer_encounter(icu_status="completed"), frozenset({"icu-north"}))
    assert change.kind is CensusChangeValues.ICU_DISCHARGE
    assert change.at == datetime(2020, 11, 6, 8, tzinfo=UTC) and change.unit == "icu-north"


def test_contained_location_typed_icu_is_the_hospital_icu():
    encounter = _valid(
        {
            "resourceType": "Encounter",
            "contained": [
                {
                    "resourceType": "Location",
                    "id": "loc",
                    "status": "active",
                    "name": "Intensivstation",
                    "type": [{"coding": [{"system": V3_ROLE, "code": "ICU"}]}],
                }
            ],
            "status": "in-progress",
            "class": {"system": V3_ACT, "code": "IMP"},
            "subject": {"reference": "Patient/k1-abc"},
            "location": [
                {"location": {"reference": "#loc"}, "period": {"start": "2020-11-02T08:00:00Z"}}
            ],
        }
    )
    (change,) = census_changes(encounter)
    assert change.kind is CensusChangeValues.ICU_ADMISSION and change.unit is None


def test_ventilation_procedure_starts_and_ends():
    (start,) = census_changes(ventilation("in-progress", location="icu-north"))
    assert start.kind is CensusChangeValues.VENTILATION_START
    assert start.at == datetime(2020, 11, 3, 2, tzinfo=UTC) and start.unit == "icu-north"
    end = ventilation_change(ventilation("completed", end="2020-11-09T10:00:00Z"))
    assert end is not None and end.kind is CensusChangeValues.VENTILATION_END
    assert end.at == datetime(2020, 11, 9, 10, tzinfo=UTC) and end.unit is None
    assert census_candidate(ventilation("in-progress"))


def test_other_procedures_and_unfinished_states_change_nothing():
    niv = ventilation("in-progress")
    niv["code"]["coding"][0]["code"] = "428311008"  # non-invasive ventilation
    niv["category"]["coding"][0]["code"] = "428311008"
    assert census_changes(_valid(niv)) == [] and not census_candidate(niv)
    assert ventilation_change(ventilation("preparation")) is None
    assert ventilation_change(ventilation("completed")) is None  # no end time: cannot place it
    outpatient = {**transfer_encounter(), "class": {"system": V3_ACT, "code": "AMB"}}
    assert census_changes(outpatient, frozenset({"icu-north"})) == []
    assert not census_candidate(outpatient)
