"""The cohort's index files: ``manifest.json`` (what arrives when) and ``outcomes.csv`` (truth).

Both are written by :func:`triage.cohort.generate_cohort` and read back here as typed, frozen
dataclasses, so that consumers (replay, training, the demo) never parse them by hand.
Outcomes are SYNTHETIC: they prove the plumbing, not clinical validity.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from triage.cohort.exceptions import CohortError, CohortErrorReason

MANIFEST_NAME = "manifest.json"
OUTCOMES_NAME = "outcomes.csv"
OUTCOME_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "study_uid",
    "severity",
    "ventilation_14d",
    "icu_admission",
    "icu_los_days",
    "lesion_volume_ml_true",
    "lung_volume_ml_true",
)


@dataclass(frozen=True)
class StudyEntry:
    """One CT study of the cohort and when it (and its patient's FHIR bundle) arrives."""

    patient_id: str
    study_uid: str
    series_uid: str
    study_dir: str  # relative to the cohort folder
    fhir_bundle: str  # relative to the cohort folder
    ct_time: datetime
    offset_s: float  # CT arrival, seconds after start_time (ascending over studies)
    fhir_offset_s: float  # FHIR bundle arrival, seconds after start_time (may follow the CT)

    def to_json(self) -> dict[str, Any]:
        """JSON object of this entry as written in ``manifest.json``."""
        return {
            "patient_id": self.patient_id,
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "study_dir": self.study_dir,
            "fhir_bundle": self.fhir_bundle,
            "ct_time": self.ct_time.isoformat(),
            "offset_s": self.offset_s,
            "fhir_offset_s": self.fhir_offset_s,
        }


@dataclass(frozen=True)
class CohortManifest:
    """The contents of ``manifest.json``."""

    seed: int
    n_patients: int
    hospital: str
    start_time: datetime
    census_bundle: str  # relative to the cohort folder
    studies: tuple[StudyEntry, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON object of the manifest."""
        return {
            "seed": self.seed,
            "n_patients": self.n_patients,
            "hospital": self.hospital,
            "start_time": self.start_time.isoformat(),
            "census_bundle": self.census_bundle,
            "studies": [s.to_json() for s in self.studies],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CohortManifest:
        """Parse a manifest JSON object; raise :class:`CohortError` when malformed."""
        try:
            studies = tuple(
                StudyEntry(
                    patient_id=str(s["patient_id"]),
                    study_uid=str(s["study_uid"]),
                    series_uid=str(s["series_uid"]),
                    study_dir=str(s["study_dir"]),
                    fhir_bundle=str(s["fhir_bundle"]),
                    ct_time=_aware(s["ct_time"]),
                    offset_s=float(s["offset_s"]),
                    fhir_offset_s=float(s.get("fhir_offset_s", s["offset_s"])),
                )
                for s in data["studies"]
            )
            manifest = cls(
                seed=int(data["seed"]),
                n_patients=int(data["n_patients"]),
                hospital=str(data["hospital"]),
                start_time=_aware(data["start_time"]),
                census_bundle=str(data["census_bundle"]),
                studies=studies,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CohortError(CohortErrorReason.INVALID_MANIFEST, f"{type(e).__name__}: {e}") from e
        offsets = [s.offset_s for s in studies]
        if offsets != sorted(offsets):
            raise CohortError(CohortErrorReason.INVALID_MANIFEST, "offset_s is not ascending")
        return manifest


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {text!r}: a timezone offset is required")
    return value


def write_manifest(cohort_dir: Path, manifest: CohortManifest) -> Path:
    """Write ``manifest.json`` atomically (it marks a complete cohort) and return its path."""
    path = cohort_dir / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def load_manifest(cohort_dir: Path) -> CohortManifest:
    """Read ``<cohort_dir>/manifest.json``; raise :class:`CohortError` if missing or malformed."""
    path = Path(cohort_dir) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise CohortError(CohortErrorReason.MISSING_FILE, f"no manifest at {path}") from e
    except json.JSONDecodeError as e:
        raise CohortError(CohortErrorReason.INVALID_MANIFEST, f"{path}: {e}") from e
    if not isinstance(data, dict):
        raise CohortError(CohortErrorReason.INVALID_MANIFEST, f"{path}: not a JSON object")
    return CohortManifest.from_json(data)


@dataclass(frozen=True)
class OutcomeRow:
    """One row of ``outcomes.csv``: simulated truth for one study (SYNTHETIC)."""

    patient_id: str
    study_uid: str
    severity: float  # latent 0..1
    ventilation_14d: bool
    icu_admission: bool
    icu_los_days: float | None  # None when not admitted to the ICU
    lesion_volume_ml_true: float
    lung_volume_ml_true: float

    def to_csv_row(self) -> dict[str, str]:
        """Return the row as CSV strings (booleans as 0/1, missing length of stay empty)."""
        return {
            "patient_id": self.patient_id,
            "study_uid": self.study_uid,
            "severity": f"{self.severity:.4f}",
            "ventilation_14d": str(int(self.ventilation_14d)),
            "icu_admission": str(int(self.icu_admission)),
            "icu_los_days": "" if self.icu_los_days is None else f"{self.icu_los_days:.1f}",
            "lesion_volume_ml_true": f"{self.lesion_volume_ml_true:.2f}",
            "lung_volume_ml_true": f"{self.lung_volume_ml_true:.2f}",
        }


def write_outcomes(cohort_dir: Path, rows: list[OutcomeRow]) -> Path:
    """Write ``outcomes.csv`` with the contract's columns, in manifest order."""
    path = cohort_dir / OUTCOMES_NAME
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(OUTCOME_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row.to_csv_row())
    return path


def load_outcomes(cohort_dir: Path) -> list[OutcomeRow]:
    """Read ``<cohort_dir>/outcomes.csv``; raise :class:`CohortError` if missing or malformed."""
    path = Path(cohort_dir) / OUTCOMES_NAME
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = set(OUTCOME_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise CohortError(
                    CohortErrorReason.INVALID_OUTCOMES, f"{path}: missing columns {sorted(missing)}"
                )
            return [_outcome(r) for r in reader]
    except FileNotFoundError as e:
        raise CohortError(CohortErrorReason.MISSING_FILE, f"no outcomes at {path}") from e
    except (KeyError, ValueError) as e:
        raise CohortError(CohortErrorReason.INVALID_OUTCOMES, f"{path}: {e}") from e


def _outcome(r: dict[str, str]) -> OutcomeRow:
    los = float(r["icu_los_days"]) if r["icu_los_days"].strip() else None
    if los is not None and not math.isfinite(los):
        raise ValueError(f"icu_los_days not finite: {r['icu_los_days']!r}")
    return OutcomeRow(
        patient_id=r["patient_id"],
        study_uid=r["study_uid"],
        severity=float(r["severity"]),
        ventilation_14d=_flag(r["ventilation_14d"]),
        icu_admission=_flag(r["icu_admission"]),
        icu_los_days=los,
        lesion_volume_ml_true=float(r["lesion_volume_ml_true"]),
        lung_volume_ml_true=float(r["lung_volume_ml_true"]),
    )


def _flag(text: str) -> bool:
    if text not in {"0", "1"}:
        raise ValueError(f"expected 0 or 1, got {text!r}")
    return text == "1"
