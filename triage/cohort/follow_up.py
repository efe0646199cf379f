"""Synthetic follow-up CTs: a second study of some patients, improving, stable or worsening.

SYNTHETIC. A share of the cohort's patients gets one follow-up CT 2-5 days after the first,
same anatomy (same phantom streams), a new lesion burden drawn from a trajectory:

- ``improving``: burden x 0.3-0.6;
- ``stable``: burden x 0.95-1.05;
- ``worsening``: burden + 15-25 points of lung (a first CT at 10 % or more);
- ``mild_then_worsening``: the same rise after a mild first CT (under 10 % of lung), the
  "secondary worsening" the clinicians ask to catch.

A share of them is treated between the two CTs (:mod:`triage.cohort.treatments`), independently
of the trajectory (no effect of any drug is simulated).

The rises are well above the worsening rule's default (+10 points in 7 days) and the falls and
steadiness well below it, so the rule's SYNTHETIC sensitivity and specificity measure the
plumbing and the measurement, not a clinical claim. ``follow_up.csv`` holds the truth.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from triage.cohort.dicom_series import SeriesInfo, series_uids, write_series
from triage.cohort.manifest import OutcomeRow, StudyEntry
from triage.cohort.patients import ClinicalProfile
from triage.cohort.phantom import PhantomGeometry, sample_phantom
from triage.cohort.treatments import treatment_bundle
from triage.fhir.codes import ConditionKey
from triage.fhir.treatments import treatment_of

FOLLOW_UP_FILE = "follow_up.csv"
#: Follow-up studies take their UIDs from patient index + this (census occupants use 9e7+).
FOLLOW_UP_INDEX = 80_000_000
_STREAM = 101  # the follow-up draws of a patient: a random stream of their own
MILD_FRACTION = 0.10
MAX_FRACTION = 0.80


class TrajectoryValues(StrEnum):
    """How the burden moves from the first CT to the follow-up."""

    IMPROVING = "improving"
    STABLE = "stable"
    WORSENING = "worsening"
    MILD_THEN_WORSENING = "mild_then_worsening"

    @property
    def worsens(self) -> bool:
        """Whether the follow-up is a simulated worsening (the rule's positives)."""
        return self in (TrajectoryValues.WORSENING, TrajectoryValues.MILD_THEN_WORSENING)


@dataclass(frozen=True)
class FollowUpPlan:
    """One patient's follow-up: trajectory, when, and the new lesion fraction of lung."""

    trajectory: TrajectoryValues
    days_after: float
    lesion_fraction: float


@dataclass(frozen=True)
class FollowUpRow:
    """The truth of one follow-up study (a row of ``follow_up.csv``)."""

    patient_id: str
    study_uid: str
    prior_study_uid: str
    trajectory: str
    days_after: float
    lesion_fraction_prior: float
    lesion_fraction: float
    worsening: bool
    treatments: str = ""  # drug keys given between the two CTs, ';'-separated (SYNTHETIC)


def plan_follow_up(
    seed: int, index: int, first_fraction: float, share: float
) -> FollowUpPlan | None:
    """The follow-up of patient ``index`` (None: none), deterministic in (seed, index)."""
    rng = np.random.default_rng([seed, index, _STREAM])
    if rng.random() >= share:
        return None
    days = float(np.round(rng.uniform(2.0, 5.0), 3))
    mild = first_fraction < MILD_FRACTION
    rising = TrajectoryValues.MILD_THEN_WORSENING if mild else TrajectoryValues.WORSENING
    trajectory = [TrajectoryValues.IMPROVING, TrajectoryValues.STABLE, rising][
        int(rng.choice(3, p=[0.3, 0.3, 0.4]))
    ]
    if trajectory == TrajectoryValues.IMPROVING:
        fraction = first_fraction * rng.uniform(0.3, 0.6)
    elif trajectory == TrajectoryValues.STABLE:
        fraction = first_fraction * rng.uniform(0.95, 1.05)
    else:
        fraction = min(first_fraction + rng.uniform(0.15, 0.25), MAX_FRACTION)
    return FollowUpPlan(trajectory, days, float(fraction))


def write_follow_up(
    out_dir: Path,
    seed: int,
    profile: ClinicalProfile,
    geometry: PhantomGeometry,
    first: tuple[StudyEntry, SeriesInfo],
    plan: FollowUpPlan,
) -> tuple[StudyEntry, OutcomeRow, FollowUpRow]:
    """Write the follow-up series of a patient; its manifest entry, outcome and truth rows."""
    entry, info = first
    spec = sample_phantom(
        seed, profile.index, geometry,
        lesion_fraction=plan.lesion_fraction,
        consolidation_share=0.15 + 0.5 * profile.severity,
        obese=ConditionKey.OBESITY in profile.conditions,
    )  # fmt: skip
    study_uid, series_uid, frame_uid = series_uids(seed, FOLLOW_UP_INDEX + profile.index)
    ct_time = entry.ct_time + timedelta(days=plan.days_after)
    follow_info = replace(
        info, study_uid=study_uid, series_uid=series_uid, frame_of_reference_uid=frame_uid,
        ct_time=ct_time, accession_number=f"{info.accession_number}F",
    )  # fmt: skip
    study_dir = f"dicom/{study_uid}"
    truth = write_series(spec, follow_info, out_dir / study_dir)
    offset_s = entry.offset_s + plan.days_after * 86400.0
    study = replace(
        entry, study_uid=study_uid, series_uid=series_uid, study_dir=study_dir,
        ct_time=ct_time, offset_s=offset_s, fhir_offset_s=max(entry.fhir_offset_s, offset_s - 60.0),
    )  # fmt: skip
    treated = treatment_bundle(
        seed, profile.index, entry.patient_id, profile.severity, entry.ct_time, ct_time
    )
    drugs = ""
    if treated is not None:
        fhir_rel = f"fhir/{entry.patient_id}-treatments.json"
        (out_dir / fhir_rel).write_text(json.dumps(treated, indent=1))
        study = replace(study, fhir_bundle=fhir_rel, fhir_offset_s=offset_s - 7200.0)
        drugs = ";".join(_drugs(treated))
    outcome = OutcomeRow(
        patient_id=entry.patient_id,
        study_uid=study_uid,
        severity=profile.severity,
        ventilation_14d=profile.outcome.ventilation_14d,
        icu_admission=profile.outcome.icu_admission,
        icu_los_days=profile.outcome.icu_los_days,
        lesion_volume_ml_true=truth.lesion_volume_ml,
        lung_volume_ml_true=truth.lung_volume_ml,
    )
    row = FollowUpRow(
        patient_id=entry.patient_id,
        study_uid=study_uid,
        prior_study_uid=entry.study_uid,
        trajectory=str(plan.trajectory),
        days_after=plan.days_after,
        lesion_fraction_prior=profile.lesion_fraction_target,
        lesion_fraction=plan.lesion_fraction,
        worsening=plan.trajectory.worsens,
        treatments=drugs,
    )
    return study, outcome, row


def _drugs(bundle: dict[str, Any]) -> list[str]:
    """The drug keys a treatment bundle orders (its MedicationRequests), in order."""
    found = (treatment_of(e["resource"]) for e in bundle["entry"])
    return list(
        dict.fromkeys(t.drug for t in found if t is not None and t.source == "MedicationRequest")
    )


def write_follow_up_rows(out_dir: Path, rows: list[FollowUpRow]) -> Path:
    """Write ``follow_up.csv`` (header only when no patient has a follow-up)."""
    path = out_dir / FOLLOW_UP_FILE
    names = list(FollowUpRow.__dataclass_fields__)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    return path


def load_follow_up(cohort_dir: Path) -> list[FollowUpRow]:
    """The follow-up truth of a cohort (empty when it has none)."""
    path = cohort_dir / FOLLOW_UP_FILE
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [
            FollowUpRow(
                patient_id=r["patient_id"],
                study_uid=r["study_uid"],
                prior_study_uid=r["prior_study_uid"],
                trajectory=r["trajectory"],
                days_after=float(r["days_after"]),
                lesion_fraction_prior=float(r["lesion_fraction_prior"]),
                lesion_fraction=float(r["lesion_fraction"]),
                worsening=r["worsening"] == "True",
                treatments=r.get("treatments") or "",
            )
            for r in csv.DictReader(f)
        ]
