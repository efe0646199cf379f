"""UIDs: harmless odd ones accepted and flagged, hostile ones refused, storage keys hashed."""

from __future__ import annotations

import pytest
from pydicom.config import disable_value_validation
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from inference.exceptions import SeriesRejected, SeriesRejectionReason
from inference.uids import (
    UID_MAX_ACCEPTED_CHARS,
    check_uid,
    is_conformant_uid,
    nonconformant_uids,
    uid_key,
    uid_refusal,
)

pytestmark = pytest.mark.unit

HARMLESS = [
    "896911bf-1143-4c8d-8f04-f3cd1a7f6204",
    "1.2.840.0010.01",
    "1." + "2" * 70,
    "1.2.a",
    "1..2",
    "ANON 17?x=1#y%20",
]
HOSTILE = ["", ".", "..", "../../etc", "1.2/3", "1.2\\3", "1.2\x003", "1.2\n3", "1.\x7f", "1.2.é"]


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2", "0.1", "2.25.0", "1." + "2" * 62])
def test_conformant(uid: str) -> None:
    assert is_conformant_uid(uid)
    assert uid_refusal(uid) is None


@pytest.mark.parametrize("uid", HARMLESS)
def test_harmless_nonconformant_is_accepted(uid: str) -> None:
    assert not is_conformant_uid(uid)
    assert uid_refusal(uid) is None


@pytest.mark.parametrize("uid", [*HOSTILE, "1." + "2" * UID_MAX_ACCEPTED_CHARS])
def test_hostile_is_refused(uid: str) -> None:
    assert uid_refusal(uid) is not None


def test_key_is_a_fixed_hex_name_whatever_the_uid() -> None:
    keys = {uid_key(uid) for uid in [*HARMLESS, "1.2.3", "1.2.3 "]}
    assert len(keys) == len(HARMLESS) + 2
    assert all(len(key) == 32 and set(key) <= set("0123456789abcdef") for key in keys)
    assert uid_key("1.2.3") == uid_key("1.2.3")


def _with_raw_uid(raw: bytes) -> Dataset:
    ds = Dataset()
    tag = Tag("StudyInstanceUID")
    ds[tag] = RawDataElement(tag, "UI", len(raw), raw, 0, False, True)
    return ds


def test_check_uid_reads_the_stored_bytes() -> None:
    assert check_uid(_with_raw_uid(b"1.2.3\x00"), "StudyInstanceUID") == "1.2.3"  # padding
    with pytest.raises(SeriesRejected) as caught:
        check_uid(_with_raw_uid(b"1.2\x003.4\x00"), "StudyInstanceUID")  # NUL inside
    assert caught.value.reason is SeriesRejectionReason.HOSTILE_UID
    assert "control" in caught.value.detail


def test_nonconformant_uids_names_the_attributes() -> None:
    good, odd = Dataset(), Dataset()
    for ds in (good, odd):
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = "1.2", "1.2.3", "1.2.3.4"
    del odd.SOPInstanceUID  # a new element takes the validation mode in force when it is made
    with disable_value_validation():  # pydicom warns when code sets a non-conformant UID
        odd.SOPInstanceUID = "1.2.03"
    assert nonconformant_uids([good]) == ()
    assert nonconformant_uids([good, odd]) == ("SOPInstanceUID",)
