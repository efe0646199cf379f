"""Folder source (``ctriage ingest PATH``): a directory of DICOM files, or a DICOMDIR.

Every file's header is read (pixels are not), instances are copied into the study store under
checked UIDs, and each study found becomes one ``ct.studies`` event. Files that are not DICOM are
counted and skipped; a DICOM file that cannot be stored (hostile UID, truncated header) is
dead-lettered with its reason; other studies keep flowing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

from inference import (
    SeriesRejected,
    SeriesRejectionReason,
    quiet_pydicom,
    read_headers,
    study_datetime,
)
from streams.metrics import RECEIVED_INSTANCES
from streams.records import CtStudy, DeadLetter
from streams.sources.publish import StudyArrival, StudyPublisher, rejection
from streams.sources.study_store import StudyStore, patient_id

logger = logging.getLogger(__name__)

SOURCE = "folder"
MAX_FILES = 100_000


@dataclass
class FolderReport:
    """What one ingest run did."""

    files: int = 0
    instances: int = 0
    not_dicom: int = 0
    events: list[CtStudy] = field(default_factory=list)
    rejections: list[DeadLetter] = field(default_factory=list)


def candidate_files(path: Path, max_files: int = MAX_FILES) -> list[Path]:
    """The files to read: those a DICOMDIR references, or every regular file under ``path``."""
    path = path.resolve()
    dicomdir = path if path.name.upper() == "DICOMDIR" else path / "DICOMDIR"
    if dicomdir.is_file():
        return list(_dicomdir_files(dicomdir, max_files))
    if path.is_file():
        return [path]
    files: list[Path] = []
    for candidate in path.rglob("*"):
        if candidate.is_symlink() or not candidate.is_file() or candidate.name.startswith("."):
            continue
        files.append(candidate)
        if len(files) > max_files:
            raise SeriesRejected(
                SeriesRejectionReason.RESOURCE_LIMIT, f"more than {max_files} files under {path}"
            )
    return sorted(files)


def _dicomdir_files(dicomdir: Path, max_files: int) -> Iterator[Path]:
    """Files referenced by a DICOMDIR, kept inside its folder (no ``..`` or absolute ids)."""
    root = dicomdir.parent.resolve()
    with quiet_pydicom():
        directory = dcmread(dicomdir)
    count = 0
    for record in directory.get("DirectoryRecordSequence", []):
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else [str(p) for p in file_id]
        target = root.joinpath(*parts).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            logger.warning("DICOMDIR names %s outside its folder or missing; skipped", parts)
            continue
        count += 1
        if count > max_files:
            raise SeriesRejected(
                SeriesRejectionReason.RESOURCE_LIMIT, f"DICOMDIR lists more than {max_files}"
            )
        yield target


def ingest_folder(path: Path, store: StudyStore, publisher: StudyPublisher) -> FolderReport:
    """Store every DICOM instance under ``path`` and announce each study found."""
    report = FolderReport()
    try:
        files = candidate_files(path)
    except SeriesRejected as e:
        report.rejections.append(_reject(publisher, e, item=str(path)))
        return report
    report.files = len(files)
    studies: dict[str, StudyArrival] = {}
    for file in files:
        try:
            [(_, ds)] = read_headers([file])
            stored = store.import_file(file, ds)
        except SeriesRejected as e:
            if e.reason is SeriesRejectionReason.NOT_DICOM:
                report.not_dicom += 1
                continue
            report.rejections.append(_reject(publisher, e, item=file.name))
            continue
        report.instances += 1
        RECEIVED_INSTANCES.labels(source=SOURCE).inc()
        _note(studies, stored.study_uid, ds, store)
    if not studies and not report.rejections:
        error = SeriesRejected(SeriesRejectionReason.NOT_DICOM, f"no DICOM file under {path}")
        report.rejections.append(_reject(publisher, error, item=str(path)))
    for arrival in studies.values():
        report.events.append(publisher.publish(arrival, SOURCE))
    publisher.flush()
    return report


def _note(studies: dict[str, StudyArrival], study_uid: str, ds: Dataset, store: StudyStore) -> None:
    known = studies.get(study_uid)
    studies[study_uid] = StudyArrival(
        study_uid=study_uid,
        patient_id=known.patient_id if known else patient_id(ds),
        study_dir=store.study_dir(study_uid),
        ct_time=known.ct_time if known else study_datetime(ds),
        instances=(known.instances if known else 0) + 1,
    )


def _reject(publisher: StudyPublisher, error: SeriesRejected, item: str) -> DeadLetter:
    letter = rejection(SOURCE, error.reason, error, item=item)
    publisher.reject(letter)
    return letter
