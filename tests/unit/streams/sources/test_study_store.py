"""The study store: paths from hashed UIDs, non-conformant UIDs kept and counted once per study."""

from __future__ import annotations

from pathlib import Path

import pytest
from dicom_factory import ct_slice
from pydicom import dcmread
from pydicom.config import disable_value_validation
from pydicom.dataset import Dataset

from inference.exceptions import SeriesRejected, SeriesRejectionReason
from inference.uids import check_uid, uid_key
from streams.metrics import NONCONFORMANT_UID_STUDIES
from streams.sources.study_store import StudyStore

pytestmark = pytest.mark.unit

UUID_STUDY = "896911bf-1143-4c8d-8f04-f3cd1a7f6204"


def _slice(k: int, study_uid: str, series_uid: str = "1.2.826.0.1.3680043.8.498.5") -> Dataset:
    with disable_value_validation():  # the factory's UIDs are set as given, conformant or not
        return ct_slice(k, series_uid=series_uid, study_uid=study_uid)


def _count() -> float:
    return NONCONFORMANT_UID_STUDIES._value.get()


def test_paths_are_hashes_of_the_uids(tmp_path: Path) -> None:
    store = StudyStore(tmp_path)
    ds = _slice(0, "1.2.826.0.1.3680043.8.498.77")
    stored = store.save_dataset(ds)
    assert stored.study_uid == "1.2.826.0.1.3680043.8.498.77"
    relative = stored.path.relative_to(tmp_path.resolve())
    assert relative.parts == (
        uid_key(stored.study_uid),
        uid_key(stored.series_uid),
        f"{uid_key(stored.sop_uid)}.dcm",
    )
    assert store.study_dir(stored.study_uid) == stored.path.parent.parent


def test_nonconformant_study_is_stored_as_received_and_counted_once(tmp_path: Path) -> None:
    store = StudyStore(tmp_path)
    before = _count()
    paths = [store.save_dataset(_slice(k, UUID_STUDY)).path for k in range(3)]
    assert _count() == before + 1
    assert all(p.parent.parent == store.study_dir(UUID_STUDY) for p in paths)
    assert check_uid(dcmread(paths[0]), "StudyInstanceUID") == UUID_STUDY  # kept as received
    # a restart (new store object) does not count the same study again
    StudyStore(tmp_path).save_dataset(_slice(3, UUID_STUDY))
    assert _count() == before + 1


def test_conformant_study_is_not_counted(tmp_path: Path) -> None:
    before = _count()
    StudyStore(tmp_path).save_dataset(_slice(0, "1.2.826.0.1.3680043.8.498.78"))
    assert _count() == before


@pytest.mark.parametrize("hostile", ["../../etc", "1.2/3", "1.2\n3"])
def test_hostile_uid_is_refused_before_anything_is_written(tmp_path: Path, hostile: str) -> None:
    store = StudyStore(tmp_path / "store")
    with pytest.raises(SeriesRejected) as caught:
        store.save_dataset(_slice(0, "1.2.826.0.1.3680043.8.498.79", series_uid=hostile))
    assert caught.value.reason is SeriesRejectionReason.HOSTILE_UID
    assert not any((tmp_path / "store").iterdir())
