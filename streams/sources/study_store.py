"""The ingress-side study store: DICOM instances on disk under keys derived from their UIDs.

Layout: ``<root>/<key(StudyInstanceUID)>/<key(SeriesInstanceUID)>/<key(SOPInstanceUID)>.dcm``,
where ``key`` is a hash of the UID (:func:`inference.uids.uid_key`): no UID ever becomes a path
component, so a non-conformant UID (an anonymiser's UUID) is stored like any other, and a
hostile one (control characters, path separators) is refused before anything is written. The
files keep their UIDs as received; the records carry them. A study folder is the claim check
that a ``ct.studies`` event carries (``file://`` URI); the pixels never go through Kafka.

A study whose instances carry non-conformant UIDs is counted once in
``ctriage_nonconformant_uid_studies``: a marker file in its folder (hidden from the readers,
which skip dot files) records that it was counted, across restarts too.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from inference import check_uid, is_conformant_uid, raw_text, uid_key
from streams.metrics import NONCONFORMANT_UID_STUDIES

logger = logging.getLogger(__name__)

#: Marks a study folder whose non-conformant UIDs were counted.
NONCONFORMANT_MARKER = ".nonconformant-uids"


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
        """The checked UIDs of ``ds`` and its path; raises ``SeriesRejected`` (HOSTILE_UID).

        Counts the study in ``ctriage_nonconformant_uid_studies`` the first time one of its
        instances arrives with a non-conformant UID.
        """
        study = check_uid(ds, "StudyInstanceUID")
        series = check_uid(ds, "SeriesInstanceUID")
        sop = check_uid(ds, "SOPInstanceUID")
        path = self.study_dir(study) / uid_key(series) / f"{uid_key(sop)}.dcm"
        if not all(is_conformant_uid(uid) for uid in (study, series, sop)):
            self._count_nonconformant(study)
        return study, series, sop, path

    def study_dir(self, study_uid: str) -> Path:
        """The folder of a study (named by the hash of its UID)."""
        return self.root / uid_key(study_uid)

    def _count_nonconformant(self, study_uid: str) -> None:
        folder = self.study_dir(study_uid)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            (folder / NONCONFORMANT_MARKER).open("x").close()
        except FileExistsError:
            return  # counted when an earlier instance of the study arrived
        NONCONFORMANT_UID_STUDIES.inc()
        logger.info("study %r has non-conformant UIDs (accepted, stored by hash)", study_uid)

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
