"""Synthetic identities: raw patient id, MRN, name, exact birth date, address, phone.

These are the identifying fields that ingress must drop or pseudonymise; they are drawn from
small made-up lists and belong to nobody. Ids are a hash of (seed, patient index), re-hashed on
the rare collision, so they are unique within a cohort, stable for a seed, not in arrival order,
and different between seeds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta

from triage.cohort.patients import Stream, patient_rng

_GIVEN_FEMALE = (
    "Ana", "Beatriz", "Carmen", "Chiara", "Elena", "Emma", "Fatima", "Grace", "Hana", "Ines",
    "Julia", "Lea", "Lucia", "Maria", "Marta", "Nadia", "Olga", "Paula", "Rosa", "Sofia",
)  # fmt: skip
_GIVEN_MALE = (
    "Ahmed", "Andres", "Bruno", "Carlos", "David", "Diego", "Emil", "Hugo", "Ivan", "Jonas",
    "Jorge", "Luca", "Marco", "Mateo", "Noah", "Omar", "Pablo", "Piet", "Tomas", "Yusuf",
)  # fmt: skip
_FAMILY = (
    "Almeida", "Bauer", "Bianchi", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hansen",
    "Ivanova", "Jansen", "Kowalski", "Lopez", "Martin", "Moreau", "Novak", "Okafor", "Petrov",
    "Quinn", "Rossi", "Santos", "Schmidt", "Silva", "Torres", "Urban", "Vargas", "Weber", "Yilmaz",
)  # fmt: skip
_STREETS = (
    "Acacia Avenue", "Birch Road", "Canal Street", "Harbour Lane", "Hill Street", "Linden Way",
    "Market Square", "Mill Road", "Orchard Close", "Park Avenue", "River Walk", "Station Road",
)  # fmt: skip
_CITIES = (("Northbridge", "10"), ("Easton", "20"), ("Westfield", "30"), ("Southport", "40"))


@dataclass(frozen=True)
class Identity:
    """Identifying data of one synthetic patient (to be removed at ingress)."""

    patient_id: str  # raw id: FHIR Patient.id and DICOM PatientID
    mrn: str
    given_name: str
    family_name: str
    birth_date: date
    street: str
    city: str
    postal_code: str
    phone: str


def _digits(seed: int, index: int, label: str, n: int, attempt: int = 0) -> str:
    digest = hashlib.sha256(f"ctriage-cohort|{seed}|{index}|{label}|{attempt}".encode()).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**n:0{n}d}"


def raw_patient_id(seed: int, index: int, taken: set[str] | None = None) -> str:
    """Return the raw (identifying) id of patient ``index`` of cohort ``seed``.

    Ids in ``taken`` are skipped (deterministically: the next attempt of the same hash).
    """
    taken = taken or set()
    attempt = 0
    while (candidate := f"PAT{_digits(seed, index, 'patient', 9, attempt)}") in taken:
        attempt += 1
    return candidate


def sample_identity(
    seed: int,
    index: int,
    sex: str,
    age_years: int,
    reference_day: date,
    taken_ids: set[str] | None = None,
) -> Identity:
    """Draw the identity of a patient who is ``age_years`` old on ``reference_day``.

    ``taken_ids`` are raw ids already used in the cohort; the new id is added to it.
    """
    rng = patient_rng(seed, index, Stream.IDENTITY)
    given_pool = _GIVEN_MALE if sex == "male" else _GIVEN_FEMALE
    # Birthday somewhere in the year before the reference day's "age_years" anniversary.
    days_past_birthday = int(rng.integers(0, 365))
    try:
        anniversary = reference_day.replace(year=reference_day.year - age_years)
    except ValueError:  # 29 February in a non-leap year
        anniversary = reference_day.replace(year=reference_day.year - age_years, day=28)
    birth = anniversary - timedelta(days=days_past_birthday)
    patient_id = raw_patient_id(seed, index, taken_ids)
    if taken_ids is not None:
        taken_ids.add(patient_id)
    city, postal_prefix = _CITIES[int(rng.integers(len(_CITIES)))]
    return Identity(
        patient_id=patient_id,
        mrn=_digits(seed, index, "mrn", 8),
        given_name=str(given_pool[int(rng.integers(len(given_pool)))]),
        family_name=str(_FAMILY[int(rng.integers(len(_FAMILY)))]),
        birth_date=birth,
        street=f"{int(rng.integers(1, 200))} {_STREETS[int(rng.integers(len(_STREETS)))]}",
        city=city,
        postal_code=f"{postal_prefix}{int(rng.integers(0, 1000)):03d}",
        phone=f"+99 555 {int(rng.integers(0, 10**7)):07d}",
    )
