"""Reading headers: stray files are skipped and recorded, cut-off CT images refused, and a CT
series stored without the DICOM file header (no preamble, no file meta) is read."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import truth_hu, write_ct_series
from pydicom import dcmread
from pydicom.data import get_testdata_file

from inference.exceptions import SeriesRejected, SeriesRejectionReason
from inference.headers import FileSkipReason, read_dicom, scan_headers
from inference.volume import load_series

pytestmark = pytest.mark.unit

R = SeriesRejectionReason
SLICES = 10


def _pydicom_file(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom no longer ships {name}"
    return Path(str(path))


@pytest.mark.parametrize(
    "stray",
    [
        "DICOMDIR-nopatient",  # a DICOMDIR under another name (Media Storage Directory)
        "no_meta_group_length.dcm",  # an RT Dose object cut to its first elements
        "meta_missing_tsyntax.dcm",  # file meta without SOP class, dataset without SOP UID
        "nested_priv_SQ.dcm",  # only a private sequence
        "empty_charset_LEI.dcm",  # no file meta at all, no SOP UID
    ],
)
def test_stray_object_without_sop_uid_is_skipped_and_recorded(tmp_path: Path, stray: str) -> None:
    write_ct_series(tmp_path, SLICES)
    shutil.copy(_pydicom_file(stray), tmp_path / "zz-stray.dcm")
    volume = load_series(tmp_path)
    assert volume.hu.shape[0] == SLICES
    [skipped] = volume.skipped_files
    assert skipped.file.name == "zz-stray.dcm"
    assert skipped.reason is FileSkipReason.NOT_AN_INSTANCE
    assert "no SOP Instance UID" in skipped.detail


def test_text_file_is_skipped_as_not_dicom(tmp_path: Path) -> None:
    write_ct_series(tmp_path, SLICES)
    (tmp_path / "notes.txt").write_text("acquired on the old scanner\n")
    [skipped] = load_series(tmp_path).skipped_files
    assert skipped.reason is FileSkipReason.NOT_DICOM


def test_ct_image_without_sop_uid_is_a_cut_off_member(tmp_path: Path) -> None:
    """UN_sequence.dcm says 'CT Image Storage' in its file meta and holds no SOP Instance UID."""
    write_ct_series(tmp_path, SLICES)
    shutil.copy(_pydicom_file("UN_sequence.dcm"), tmp_path / "zz-ct.dcm")
    with pytest.raises(SeriesRejected) as caught:
        load_series(tmp_path)
    assert caught.value.reason is R.TRUNCATED_FILE


def test_only_stray_files_is_not_dicom(tmp_path: Path) -> None:
    shutil.copy(_pydicom_file("DICOMDIR-nopatient"), tmp_path / "a.dcm")
    (tmp_path / "b.txt").write_text("x")
    with pytest.raises(SeriesRejected) as caught:
        scan_headers(sorted(tmp_path.iterdir()))
    assert caught.value.reason is R.NOT_DICOM


@pytest.mark.parametrize("implicit_vr", [True, False])
def test_series_stored_without_file_header_is_read(tmp_path: Path, implicit_vr: bool) -> None:
    write_ct_series(tmp_path / "with", SLICES)
    (tmp_path / "without").mkdir()
    for file in sorted((tmp_path / "with").iterdir()):
        ds = dcmread(file)
        del ds.file_meta
        ds.preamble = None
        ds.save_as(
            tmp_path / "without" / file.name,
            implicit_vr=implicit_vr,
            little_endian=True,
            enforce_file_format=False,
        )
    first = sorted((tmp_path / "without").iterdir())[0]
    assert first.read_bytes()[:2] == b"\x08\x00"  # the dataset starts at once: no preamble
    volume = load_series(tmp_path / "without")
    for k in range(SLICES):
        np.testing.assert_array_equal(volume.hu[k], truth_hu(k))
    assert volume.skipped_files == ()
    assert volume.study_uid == load_series(tmp_path / "with").study_uid


def test_headerless_reading_needs_a_dicom_object(tmp_path: Path) -> None:
    """force=True parses any bytes into something: only a dataset with SOP UIDs and a
    Modality counts. pydicom's no_meta.dcm starts one byte off (a stray pad byte before the
    dataset), so it parses into junk and is not DICOM."""
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x08\x00\x05\x00" + bytes(range(256)) * 8)
    for file in (junk, _pydicom_file("no_meta.dcm")):
        with pytest.raises(Exception) as caught:  # noqa: PT011 - pydicom's error types vary
            read_dicom(file)
        assert not isinstance(caught.value, SeriesRejected)
        [skipped] = scan_headers([file, *_good(tmp_path)]).skipped
        assert skipped.reason is FileSkipReason.NOT_DICOM


def _good(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "good"
    if not folder.exists():
        write_ct_series(folder, 2)
    return sorted(folder.iterdir())
