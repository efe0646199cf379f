"""Generate a whole synthetic cohort: DICOM phantoms, FHIR bundles, census, manifest, outcomes.

Layout of ``out_dir``::

    manifest.json              arrival timeline (written last: its presence marks completion)
    outcomes.csv               simulated truth per study (SYNTHETIC)
    fhir/<patient_id>.json     one R4 collection Bundle per patient
    fhir/census.json           ICU census: Patients + in-progress ICU Encounters
    dicom/<study_uid>/<n>.dcm  one CT series per study, file names shuffled
    follow_up.csv              truth of the follow-up CTs (``follow_up_share`` > 0; SYNTHETIC)

Everything is a deterministic function of the arguments: same seed, same bytes.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from triage.cohort.dicom_series import SeriesInfo, series_uids, write_series
from triage.cohort.exceptions import CohortError, CohortErrorReason
from triage.cohort.fhir_bundles import IcuOccupant, census_bundle, patient_bundle
from triage.cohort.follow_up import (
    FollowUpRow,
    plan_follow_up,
    write_follow_up,
    write_follow_up_rows,
)
from triage.cohort.identity import sample_identity
from triage.cohort.manifest import (
    CohortManifest,
    OutcomeRow,
    StudyEntry,
    write_manifest,
    write_outcomes,
)
from triage.cohort.patients import ClinicalProfile, Stream, patient_rng, sample_profile
from triage.cohort.phantom import PhantomGeometry, PhantomSpec, sample_phantom
from triage.fhir.codes import ConditionKey

logger = logging.getLogger(__name__)

DEFAULT_START_TIME = datetime(2020, 11, 2, 8, 0, tzinfo=UTC)
CENSUS_BUNDLE = "fhir/census.json"
MAX_MATRIX, MAX_SLICES = 1024, 1000
_COHORT_STREAM = 1_000_000_007  # never a patient index (those stay below 10^8)
_CENSUS_INDEX = 90_000_000  # census occupants use indices from here
_P_LATE_FHIR = 0.2
_P_VENTILATED_IN_ICU = 0.5  # share of ICU occupants on invasive ventilation (SYNTHETIC)
_MAX_ADMISSION_TO_VENTILATION_S = 2 * 86400.0


@dataclass(frozen=True)
class _Arrival:
    ct_offset_s: float
    fhir_offset_s: float


def _validate(
    n_patients: int, matrix: int, slices: int, icu_occupants: int, window_h: float
) -> None:
    problems = []
    if not 1 <= n_patients < _CENSUS_INDEX:
        problems.append(f"n_patients must be in [1, {_CENSUS_INDEX}), got {n_patients}")
    if not 32 <= matrix <= MAX_MATRIX:
        problems.append(f"matrix must be in [32, {MAX_MATRIX}], got {matrix}")
    if not 16 <= slices <= MAX_SLICES:
        problems.append(f"slices must be in [16, {MAX_SLICES}], got {slices}")
    if icu_occupants < 0:
        problems.append(f"icu_occupants must be >= 0, got {icu_occupants}")
    if not window_h > 0:
        problems.append(f"window_h must be > 0, got {window_h}")
    if problems:
        raise CohortError(CohortErrorReason.INVALID_PARAMETER, "; ".join(problems))


def _validate_timing(follow_up_share: float, start_time: datetime) -> None:
    if not 0.0 <= follow_up_share <= 1.0:
        raise CohortError(
            CohortErrorReason.INVALID_PARAMETER,
            f"follow_up_share must be in [0, 1], got {follow_up_share}",
        )
    if start_time.tzinfo is None:
        raise CohortError(CohortErrorReason.INVALID_PARAMETER, "start_time must be timezone-aware")


def _empty_output(out_dir: Path) -> Path:
    """Create ``out_dir`` (with ``fhir/``); refuse one that already holds something."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()):
        raise CohortError(CohortErrorReason.OUTPUT_NOT_EMPTY, f"{out_dir} is not empty")
    (out_dir / "fhir").mkdir()
    return out_dir


def generate_cohort(
    out_dir: Path,
    n_patients: int,
    seed: int,
    matrix: int = 128,
    slices: int = 64,
    hospital: str = "demo-hospital",
    *,
    icu_occupants: int = 6,
    window_h: float = 48.0,
    start_time: datetime = DEFAULT_START_TIME,
    follow_up_share: float = 0.0,
) -> CohortManifest:
    """Write a synthetic cohort of ``n_patients`` CT studies into ``out_dir`` (empty or new).

    CT studies arrive over ``window_h`` hours after ``start_time``; each patient's FHIR bundle
    arrives shortly before its CT, or (20 %) up to 90 min after it. A ``follow_up_share`` of
    the patients get a follow-up CT 2-5 days later (:mod:`triage.cohort.follow_up`). Raises
    :class:`CohortError` on bad parameters or a non-empty ``out_dir``.
    """
    _validate(n_patients, matrix, slices, icu_occupants, window_h)
    _validate_timing(follow_up_share, start_time)
    out_dir = _empty_output(Path(out_dir))
    geometry = PhantomGeometry(slices=slices, matrix=matrix)
    started = time.monotonic()

    cohort_rng = np.random.default_rng([seed, _COHORT_STREAM, int(Stream.TIMING)])
    ct_offsets = np.sort(np.rint(cohort_rng.uniform(0.0, window_h * 3600.0, size=n_patients)))
    taken_ids: set[str] = set()
    studies: list[StudyEntry] = []
    outcomes: list[OutcomeRow] = []
    follow_ups: list[FollowUpRow] = []
    for index in range(n_patients):
        study, outcome, info = _write_patient(
            out_dir,
            seed,
            index,
            float(ct_offsets[index]),
            start_time,
            hospital,
            geometry,
            taken_ids,
        )
        studies.append(study)
        outcomes.append(outcome)
        profile = sample_profile(seed, index)
        plan = plan_follow_up(seed, index, profile.lesion_fraction_target, follow_up_share)
        if plan is not None:
            second, outcome, row = write_follow_up(
                out_dir, seed, profile, geometry, (study, info), plan
            )
            studies.append(second)
            outcomes.append(outcome)
            follow_ups.append(row)
    studies.sort(key=lambda s: s.offset_s)  # the manifest is in arrival order

    census = _census(seed, icu_occupants, hospital, start_time, taken_ids)
    _write_json(out_dir / CENSUS_BUNDLE, census)
    write_outcomes(out_dir, outcomes)
    if follow_up_share > 0:
        write_follow_up_rows(out_dir, follow_ups)
    manifest = CohortManifest(
        seed=seed,
        n_patients=n_patients,
        hospital=hospital,
        start_time=start_time,
        census_bundle=CENSUS_BUNDLE,
        studies=tuple(studies),
    )
    write_manifest(out_dir, manifest)
    logger.info(
        "synthetic cohort of %d studies (%dx%dx%d) written to %s in %.1f s",
        n_patients,
        slices,
        matrix,
        matrix,
        out_dir,
        time.monotonic() - started,
    )
    return manifest


def _write_patient(
    out_dir: Path,
    seed: int,
    index: int,
    ct_offset_s: float,
    start_time: datetime,
    hospital: str,
    geometry: PhantomGeometry,
    taken_ids: set[str],
) -> tuple[StudyEntry, OutcomeRow, SeriesInfo]:
    """Write one patient's FHIR bundle and CT series; return its manifest entry and outcome."""
    profile = sample_profile(seed, index)
    arrival = _arrival(seed, index, profile, ct_offset_s)
    ct_time = start_time + timedelta(seconds=arrival.ct_offset_s)
    identity = sample_identity(
        seed, index, profile.sex, profile.age_years, ct_time.date(), taken_ids
    )
    study_uid, series_uid, frame_uid = series_uids(seed, index)

    bundle = patient_bundle(
        patient_rng(seed, index, Stream.IDENTITY),
        identity,
        profile,
        hospital,
        ct_time,
        assembled_at=start_time + timedelta(seconds=arrival.fhir_offset_s),
    )
    fhir_rel = f"fhir/{identity.patient_id}.json"
    _write_json(out_dir / fhir_rel, bundle)

    spec = phantom_for(seed, profile, geometry)
    info = SeriesInfo(
        study_uid=study_uid,
        series_uid=series_uid,
        frame_of_reference_uid=frame_uid,
        patient_id=identity.patient_id,
        family_name=identity.family_name,
        given_name=identity.given_name,
        birth_date=identity.birth_date,
        sex=profile.sex,
        age_years=profile.age_years,
        ct_time=ct_time,
        hospital=hospital,
        accession_number=f"ACC{identity.mrn}{index % 100:02d}",
    )
    study_rel = f"dicom/{study_uid}"
    truth = write_series(spec, info, out_dir / study_rel)

    study = StudyEntry(
        patient_id=identity.patient_id,
        study_uid=study_uid,
        series_uid=series_uid,
        study_dir=study_rel,
        fhir_bundle=fhir_rel,
        ct_time=ct_time,
        offset_s=arrival.ct_offset_s,
        fhir_offset_s=arrival.fhir_offset_s,
    )
    outcome = OutcomeRow(
        patient_id=identity.patient_id,
        study_uid=study_uid,
        severity=profile.severity,
        ventilation_14d=profile.outcome.ventilation_14d,
        icu_admission=profile.outcome.icu_admission,
        icu_los_days=profile.outcome.icu_los_days,
        lesion_volume_ml_true=truth.lesion_volume_ml,
        lung_volume_ml_true=truth.lung_volume_ml,
    )
    logger.debug(
        "patient %d: severity %.2f, lesions %.0f mL of %.0f mL lung",
        index + 1,
        profile.severity,
        truth.lesion_volume_ml,
        truth.lung_volume_ml,
    )
    return study, outcome, info


def phantom_for(seed: int, profile: ClinicalProfile, geometry: PhantomGeometry) -> PhantomSpec:
    """Return the CT phantom of a patient: lesion burden and consolidation share follow severity."""
    return sample_phantom(
        seed,
        profile.index,
        geometry,
        lesion_fraction=profile.lesion_fraction_target,
        consolidation_share=0.15 + 0.5 * profile.severity,
        obese=ConditionKey.OBESITY in profile.conditions,
    )


def _arrival(seed: int, index: int, profile: ClinicalProfile, ct_offset_s: float) -> _Arrival:
    """When the FHIR bundle arrives: after its newest observation and before the CT, or late."""
    rng = patient_rng(seed, index, Stream.TIMING)
    if rng.random() < _P_LATE_FHIR:
        return _Arrival(ct_offset_s, ct_offset_s + float(np.rint(rng.uniform(300.0, 5400.0))))
    newest_h = min((m.hours_before_ct for m in profile.measurements), default=3.0)
    lead_s = float(rng.uniform(60.0, max(newest_h * 3600.0 - 60.0, 61.0)))
    return _Arrival(ct_offset_s, max(0.0, float(np.rint(ct_offset_s - lead_s))))


def _census(
    seed: int, occupants: int, hospital: str, start_time: datetime, taken_ids: set[str]
) -> dict[str, Any]:
    rng = np.random.default_rng([seed, _COHORT_STREAM, int(Stream.IDENTITY)])
    # Ventilation draws from a stream of its own: the occupants stay those of earlier versions.
    ventilation_rng = np.random.default_rng([seed, _COHORT_STREAM, int(Stream.CLINICAL)])
    people: list[IcuOccupant] = []
    for j in range(occupants):
        sex = "male" if rng.random() < 0.6 else "female"
        age = int(rng.integers(40, 90))
        admitted = start_time - timedelta(seconds=float(np.rint(rng.uniform(0.0, 10 * 86400.0))))
        identity = sample_identity(seed, _CENSUS_INDEX + j, sex, age, admitted.date(), taken_ids)
        ventilated: datetime | None = None
        if ventilation_rng.random() < _P_VENTILATED_IN_ICU:
            latest_s = min(_MAX_ADMISSION_TO_VENTILATION_S, (start_time - admitted).total_seconds())
            delay_s = float(np.rint(ventilation_rng.uniform(0.0, latest_s)))
            ventilated = admitted + timedelta(seconds=delay_s)
        people.append(IcuOccupant(identity, sex, admitted, ventilated))
    return census_bundle(rng, people, hospital, assembled_at=start_time)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
