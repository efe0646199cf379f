"""The census of one ICU unit as JSON-safe state, changed one event at a time (pure).

A census holds the unit's ICU occupants, its ventilated patients, the scored patients in the
pipeline (their ventilation risk, ``[p, ct_time]``), those at risk of ventilation (scored, not
ventilated, ICU occupants included), and ICU admissions and ventilation starts per clinical day
(last :data:`ADMISSION_HISTORY_DAYS` days) for the arrivals model. Its ``clock`` is the latest
clinical time seen: it never goes back, and a scored patient stops counting after
:data:`PIPELINE_HORIZON` without admission. The stream keeps one census per unit in a table
(``hospital`` or ``hospital/unit``), so the state is plain dicts in and out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from triage.fhir.icu import CensusChangeValues

#: A scored patient stops counting as "in the pipeline" after this long without ICU admission.
PIPELINE_HORIZON = timedelta(days=14)
#: Days of admission counts kept for the arrivals model.
ADMISSION_HISTORY_DAYS = 28
VENTILATION_KINDS = frozenset(
    {CensusChangeValues.VENTILATION_START, CensusChangeValues.VENTILATION_END}
)


@dataclass(frozen=True)
class CensusEvent:
    """One change to a unit's census: a patient in or out of a bed or a ventilator, or scored.

    ``probability`` of a ``pipeline_risk`` event is the patient's ventilation risk; ``unit``
    None: not named by the source (see :meth:`CapacityPlanner.place`).
    """

    kind: CensusChangeValues
    hospital: str
    patient_pseudonym: str
    event_time: str  # ISO 8601, the clinical clock
    probability: float | None = None
    unit: str | None = None


def census_key(event: CensusEvent) -> str:
    """``hospital`` or ``hospital/unit``: one census (and one forecast) per ICU unit."""
    return f"{event.hospital}/{event.unit}" if event.unit else event.hospital


def apply_event(census: Mapping[str, Any], event: CensusEvent) -> dict[str, Any]:
    """Return the census after one event (pure; JSON-safe dicts in and out)."""
    occupants = dict(census.get("occupants", {}))
    pipeline = dict(census.get("pipeline", {}))
    admissions = dict(census.get("admissions", {}))
    ventilated = dict(census.get("ventilated", {}))
    at_risk = dict(census.get("at_risk", {}))  # scored, not ventilated (ICU occupants included)
    starts = dict(census.get("ventilation_starts", {}))
    patient = event.patient_pseudonym
    day = datetime.fromisoformat(event.event_time).date().isoformat()
    if event.kind is CensusChangeValues.ICU_ADMISSION:
        if patient not in occupants:
            admissions[day] = admissions.get(day, 0) + 1
        occupants[patient] = event.event_time
        pipeline.pop(patient, None)
    elif event.kind is CensusChangeValues.ICU_DISCHARGE:
        occupants.pop(patient, None)
        ventilated.pop(patient, None)  # nobody leaves the ICU on a ventilator here
        at_risk.pop(patient, None)
    elif event.kind is CensusChangeValues.VENTILATION_START:
        if patient not in ventilated:
            starts[day] = starts.get(day, 0) + 1
        ventilated[patient] = event.event_time
        at_risk.pop(patient, None)
        pipeline.pop(patient, None)
    elif event.kind is CensusChangeValues.VENTILATION_END:
        ventilated.pop(patient, None)
    else:
        risk = [event.probability or 0.0, event.event_time]
        if patient not in occupants:
            pipeline[patient] = risk
        if patient not in ventilated:
            at_risk[patient] = risk
    clock = max(filter(None, [census.get("clock"), event.event_time]), key=datetime.fromisoformat)
    now = datetime.fromisoformat(clock)

    def recent(scored: dict[str, Any]) -> dict[str, Any]:
        return {
            p: v for p, v in scored.items() if now - datetime.fromisoformat(v[1]) < PIPELINE_HORIZON
        }

    oldest = (now - timedelta(days=ADMISSION_HISTORY_DAYS)).date().isoformat()
    return {
        "occupants": occupants,
        "pipeline": recent(pipeline),
        "admissions": {d: n for d, n in admissions.items() if d >= oldest},
        "ventilated": ventilated,
        "at_risk": recent(at_risk),
        "ventilation_starts": {d: n for d, n in starts.items() if d >= oldest},
        "clock": clock,
    }


def daily_admissions(
    census: Mapping[str, Any], now: datetime, key: str = "admissions"
) -> list[float]:
    """Counts per day (ICU admissions, or ``ventilation_starts``) for the last 14 full days."""
    counts = census.get(key, {})
    days = [(now - timedelta(days=k)).date().isoformat() for k in range(14, 0, -1)]
    return [float(counts.get(d, 0)) for d in days]


def unit_of_patient(
    censuses: Mapping[str, Mapping[str, Any] | None], hospital: str, patient: str
) -> str | None:
    """The ICU unit of ``hospital`` where ``patient`` is an occupant, else None.

    Places a ventilation Procedure without a location; None also for the hospital-level ICU.
    """
    for census in censuses.values():
        if census and census.get("hospital") == hospital and patient in census.get("occupants", {}):
            return census.get("unit")
    return None


def is_live(census: Mapping[str, Any], wall: datetime) -> bool:
    """A census fed in (near) real time: its clinical clock is within a day of the wall clock."""
    clock = datetime.fromisoformat(census["clock"])
    return clock.tzinfo is not None and abs(wall - clock) < timedelta(days=1)
