from datetime import UTC, datetime

import pytest

from triage.icu import icu_change

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
