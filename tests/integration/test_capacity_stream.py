"""FHIR Encounters and Procedures -> ICU and ventilator census -> forecasts, on real services.

Real Kafka broker, the real worker process, the real PostgreSQL store: ICU capacity comes from a
FHIR Locations file (a unit, its beds, its ventilator Devices); a ward-to-ICU transfer, a direct
ICU admission and an invasive ventilation Procedure go through FHIR ingress; a scored patient's
ventilation risk arrives on ``capacity.events``. Forecasts on ``capacity.forecasts`` carry the
ICU beds and the ventilators, are recomputed on each change and on the schedule, and land in the
store's ``forecasts`` table. Everything is filtered by this test's own hospital id (the broker is
shared by the session's tests).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from sqlalchemy import text

from dashboards import store
from streams import topics as t
from streams.records import CapacityEvent, UnitForecastRecord
from streams.settings import Settings
from triage.fhir.icu import CensusChangeValues
from triage.fhir.pseudonym import Pseudonymiser

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
RUN = time.time_ns()
HOSPITAL = f"it-hospital-{RUN}"
UNIT = f"icu-{RUN}"
SCT = "http://snomed.info/sct"
PHYSICAL = "http://terminology.hl7.org/CodeSystem/location-physical-type"


def iso(hours_ago: float) -> str:
    return (NOW - timedelta(hours=hours_ago)).isoformat()


def locations() -> dict[str, Any]:
    unit = {
        "resourceType": "Location",
        "id": UNIT,
        "status": "active",
        "name": "ICU North",
        "type": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "ICU"}
                ]
            }
        ],
        "physicalType": {"coding": [{"system": PHYSICAL, "code": "wa"}]},
        "managingOrganization": {"reference": f"Organization/{HOSPITAL}"},
    }
    beds = [
        {
            "resourceType": "Location",
            "id": f"{UNIT}-bed-{i}",
            "status": "active",
            "physicalType": {"coding": [{"system": PHYSICAL, "code": "bd"}]},
            "partOf": {"reference": f"Location/{UNIT}"},
        }
        for i in range(3)
    ]
    ventilators = [
        {
            "resourceType": "Device",
            "id": f"{UNIT}-vent-{i}",
            "status": "active",
            "type": {"coding": [{"system": SCT, "code": "706172005"}]},
            "location": {"reference": f"Location/{UNIT}"},
        }
        for i in range(2)
    ]
    entries = [{"resource": r} for r in [unit, *beds, *ventilators]]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


@pytest.fixture(scope="module")
def settings(
    kafka_broker, postgres_server, port_offset: int, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    run_dir = tmp_path_factory.mktemp("capacity-stream")
    path = run_dir / "locations.json"
    path.write_text(json.dumps(locations()))
    return Settings(
        run_dir=run_dir,
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "partitions": 4},
        store={"url": postgres_server.create_database("capacity_stream_it")},
        worker={
            "app_id": f"ctriage-capacity-it-{RUN}",
            "data_dir": run_dir / "worker",
            "metrics_port": 29120 + port_offset,
            "web_port": 26086 + port_offset,
            "capacity_locations": path,
            "capacity_refresh_s": 3.0,
        },
    )


def encounter(patient: str, start_h: float, ward_first: bool) -> dict[str, Any]:
    stays = []
    if ward_first:
        stays.append(
            {
                "location": {"reference": "Location/ward-3b", "display": "Ward 3B"},
                "status": "completed",
                "period": {"start": iso(start_h + 20), "end": iso(start_h)},
            }
        )
    stays.append(
        {
            "location": {"reference": f"Location/{UNIT}", "display": "ICU North"},
            "status": "active",
            "period": {"start": iso(start_h)},
        }
    )
    return {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": f"Patient/{patient}"},
        "period": {"start": iso(start_h + (20 if ward_first else 0))},
        "location": stays,
    }


def ventilation(patient: str, start_h: float, end_h: float | None = None) -> dict[str, Any]:
    period = {"start": iso(start_h), **({"end": iso(end_h)} if end_h is not None else {})}
    return {
        "resourceType": "Procedure",
        "status": "in-progress" if end_h is None else "completed",
        "code": {"coding": [{"system": SCT, "code": "1258985005"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "performedPeriod": period,
    }


def forecasts(settings: Settings, want: Any, timeout_s: float = 180) -> list[UnitForecastRecord]:
    consumer = KafkaConsumer(
        t.CAPACITY_FORECASTS.name,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    found: list[UnitForecastRecord] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not want(found):
            for records in consumer.poll(timeout_ms=1000).values():
                for r in records:
                    forecast = UnitForecastRecord.model_validate_json(r.value)
                    if forecast.hospital == HOSPITAL:
                        found.append(forecast)
    finally:
        consumer.close()
    return found


def states(found: list[UnitForecastRecord]) -> list[tuple[Any, ...]]:
    """What the forecasts said, for a failure message."""
    return [(f.unit, f.issued_for, f.occupancy_now, f.pipeline_patients,
             f.ventilators.in_use_now if f.ventilators else None) for f in found]  # fmt: skip


def census_is(occupied: int, ventilated: int, pipeline: int) -> Any:
    def check(found: list[UnitForecastRecord]) -> bool:
        return any(
            f.unit == UNIT
            and f.occupancy_now == occupied
            and f.pipeline_patients == pipeline
            and f.ventilators is not None
            and f.ventilators.in_use_now == ventilated
            for f in found
        )

    return check


def test_encounters_and_ventilation_drive_icu_and_ventilator_forecasts(
    settings: Settings, worker, publish_fhir, pseudonymiser: Pseudonymiser
) -> None:
    a, b, c = (f"it-cap-{RUN}-{x}" for x in "abc")
    patients = [{"resourceType": "Patient", "id": p, "gender": "male", "birthDate": "1950"}
                for p in (a, b)]  # fmt: skip
    publish_fhir(HOSPITAL, *patients)
    publish_fhir(
        HOSPITAL,
        encounter(a, start_h=6, ward_first=True),  # transferred from a ward into the unit
        encounter(b, start_h=5, ward_first=False),  # admitted straight into the unit
        ventilation(a, start_h=4),  # no location: placed in the unit that holds the patient
    )
    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    scored = CapacityEvent(
        kind=CensusChangeValues.PIPELINE_RISK,
        hospital=HOSPITAL,
        patient_pseudonym=pseudonymiser.patient(c),
        event_time=iso(3),
        probability=0.8,
    )
    producer.send(t.CAPACITY_EVENTS.name, key=HOSPITAL.encode(), value=scored.to_bytes())
    producer.flush()
    producer.close()

    found = forecasts(settings, census_is(occupied=2, ventilated=1, pipeline=1))
    matching = [f for f in found if census_is(2, 1, 1)([f])]
    assert matching, (states(found), worker.log_path.read_text()[-3000:])
    latest = matching[-1]
    # capacity from the Locations file: 3 staffed beds, 2 ventilators
    assert latest.capacity == 3 and latest.ventilators is not None
    vent = latest.ventilators
    assert vent.capacity == 2 and len(vent.days) == len(latest.days) == 7
    assert all(d.lower95 <= d.median <= d.upper95 for d in vent.days)  # type: ignore[operator]
    # the scored patient (risk 0.8) weighs on the ventilators from the day after the CT
    assert vent.days[1].expected > 0.8 * 0.5

    publish_fhir(HOSPITAL, ventilation(a, start_h=4, end_h=2))  # extubated
    found = forecasts(settings, census_is(occupied=2, ventilated=0, pipeline=1))
    assert census_is(2, 0, 1)(found), states(found)

    # the unit is live (clinical clock near the wall clock): recomputed on the schedule
    last_event = datetime.fromisoformat(iso(2))
    scheduled = forecasts(
        settings,
        lambda fs: any(
            datetime.fromisoformat(f.issued_for) > last_event + timedelta(hours=1) for f in fs
        ),
        timeout_s=60,
    )
    again = [
        f
        for f in scheduled
        if datetime.fromisoformat(f.issued_for) > last_event + timedelta(hours=1)
    ]
    assert again and again[-1].ventilators is not None and again[-1].ventilators.in_use_now == 0

    # stored for the dashboards: ICU-bed and ventilator rows of this unit
    engine = store.make_engine(settings.store.url)
    deadline = time.monotonic() + 30
    counts: dict[str, int] = {}
    while time.monotonic() < deadline and set(counts) != {"icu_beds", "ventilators"}:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT resource, count(*) FROM forecasts WHERE hospital = :h AND unit = :u "
                    "GROUP BY resource"
                ),
                {"h": HOSPITAL, "u": UNIT},
            )
            counts = {r[0]: r[1] for r in rows}
        time.sleep(1)
    engine.dispose()
    assert set(counts) == {"icu_beds", "ventilators"}
    assert counts["icu_beds"] == counts["ventilators"] and counts["icu_beds"] % 7 == 0
