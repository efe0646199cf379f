"""The ingress-side study store: DICOM instances on disk under paths built from checked UIDs.

Layout: ``<root>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``. Every UID is
checked (digits and dots, at most 64 characters) before it becomes a path component, so a
hostile UID (``../../etc``) is refused, never written. A study folder is the claim check that a
``ct.studies`` event carries (``file://`` URI); the pixels never go through Kafka.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from inference.headers import check_uid, raw_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredInstance:
    """Where one instance landed, with the ids the sources group by."""

    study_uid: str
    series_uid: str
    sop_uid: str
    path: Path


class StudyStore:
    """Writes instances under ``root``; safe to share between threads (one file per instance)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def instance_path(self, ds: Dataset) -> tuple[str, str, str, Path]:
        """The checked UIDs of ``ds`` and its path; raises ``SeriesRejected`` (HOSTILE_UID)."""
        study = check_uid(ds, "StudyInstanceUID")
        series = check_uid(ds, "SeriesInstanceUID")
        sop = check_uid(ds, "SOPInstanceUID")
        path = self.root / study / series / f"{sop}.dcm"
        return study, series, sop, path

    def study_dir(self, study_uid: str) -> Path:
        """The folder of a study already stored (the UID was checked when it was stored)."""
        return self.root / study_uid

    def save_dataset(self, ds: Dataset) -> StoredInstance:
        """Write a received dataset (with its file meta) atomically."""
        study, series, sop, path = self.instance_path(ds)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        ds.save_as(partial, enforce_file_format=True)
        os.replace(partial, path)
        return StoredInstance(study, series, sop, path)

    def import_file(self, source: Path, ds: Dataset) -> StoredInstance:
        """Hard-link (or copy) an existing file whose header ``ds`` was read already."""
        study, series, sop, path = self.instance_path(ds)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            try:
                os.link(source, path)
            except OSError:
                shutil.copyfile(source, path)
        return StoredInstance(study, series, sop, path)


def patient_id(ds: Dataset) -> str:
    """The raw patient id (pseudonymised before it leaves ingress)."""
    return raw_text(ds, "PatientID").strip()
