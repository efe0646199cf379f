"""load_series: ordering, rescaling, spacing and every typed rejection, on small DICOM files."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from pydicom.config import disable_value_validation
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.tag import Tag
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MRImageStorage,
    generate_uid,
)

from inference.exceptions import SeriesRejected, SeriesRejectionReason
from inference.volume import VolumeLimits, load_series

pytestmark = pytest.mark.unit

R = SeriesRejectionReason
MATRIX = 32
SLICES = 10
GAP_MM = 2.5
STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
Edit = Callable[[int, Dataset], None]


def slice_hu(k: int) -> np.ndarray:
    """Slice k of the truth: a ramp whose value says which slice it is."""
    base = np.arange(MATRIX * MATRIX, dtype=np.int32).reshape(MATRIX, MATRIX) % 200 - 900
    return base + 10 * k


def write_series(
    folder: Path,
    slices: int = SLICES,
    series_uid: str | None = None,
    modality: str = "CT",
    edit: Edit | None = None,
    order: list[int] | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    prefix: str = "img",
) -> str:
    """Write a CT series, slice k at z = k * GAP_MM, files named in ``order`` (default shuffled)."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    names = order or list(np.random.default_rng(5).permutation(slices))
    for k in range(slices):
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = transfer_syntax
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = sop_uid
        ds.Modality = modality
        ds.PatientID = "PAT-1"
        ds.StudyInstanceUID = STUDY_UID
        ds.SeriesInstanceUID = series_uid
        ds.StudyDate, ds.StudyTime = "20200305", "145500.699"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-20.0, -20.0, k * GAP_MM]
        ds.PixelSpacing = [0.8, 0.7]
        ds.Rows = ds.Columns = MATRIX
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = (slice_hu(k) + 1024).astype(np.uint16).tobytes()
        if transfer_syntax == JPEGBaseline8Bit:  # never decoded: refused from the header
            ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])
        with disable_value_validation():  # some edits write invalid values on purpose
            if edit is not None:
                edit(k, ds)
            ds.save_as(folder / f"{prefix}{names[k]}.dcm", enforce_file_format=True)
    return series_uid


def rejected(path: Path, reason: SeriesRejectionReason, **limits: int) -> SeriesRejected:
    with pytest.raises(SeriesRejected) as caught:
        load_series(path, VolumeLimits(**limits)) if limits else load_series(path)
    assert caught.value.reason is reason, caught.value
    return caught.value


def test_loads_sorted_rescaled_with_spacing(tmp_path: Path) -> None:
    write_series(tmp_path)
    volume = load_series(tmp_path)
    assert volume.hu.dtype == np.int16
    assert volume.hu.shape == (SLICES, MATRIX, MATRIX)
    for k in range(SLICES):
        np.testing.assert_array_equal(volume.hu[k], slice_hu(k))
    assert volume.spacing_mm == pytest.approx((GAP_MM, 0.8, 0.7))
    assert volume.study_uid == STUDY_UID
    assert volume.patient_id == "PAT-1"
    assert volume.study_datetime == datetime(2020, 3, 5, 14, 55, 0)


def test_sorts_along_the_slice_normal_not_z(tmp_path: Path) -> None:
    """Sagittal slices (normal along -x): order follows the normal, whatever the file names."""

    def sagittal(k: int, ds: Dataset) -> None:
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # row along y, column along -z
        ds.ImagePositionPatient = [-k * GAP_MM, 0.0, 0.0]  # normal = y x -z = -x

    write_series(tmp_path, edit=sagittal)
    volume = load_series(tmp_path)
    for k in range(SLICES):
        np.testing.assert_array_equal(volume.hu[k], slice_hu(k))


def test_applies_each_slice_rescale(tmp_path: Path) -> None:
    def signed_with_slope(k: int, ds: Dataset) -> None:
        ds.PixelRepresentation = 1
        ds.RescaleSlope, ds.RescaleIntercept = 2, -10
        ds.PixelData = ((slice_hu(k) + 10) // 2).astype(np.int16).tobytes()

    write_series(tmp_path, edit=signed_with_slope)
    volume = load_series(tmp_path)
    np.testing.assert_array_equal(volume.hu[3], (slice_hu(3) + 10) // 2 * 2 - 10)


def test_timezone_offset_makes_an_aware_datetime(tmp_path: Path) -> None:
    def with_offset(_: int, ds: Dataset) -> None:
        ds.TimezoneOffsetFromUTC = "+0200"

    write_series(tmp_path, edit=with_offset)
    when = load_series(tmp_path).study_datetime
    assert when == datetime(2020, 3, 5, 14, 55, tzinfo=timezone(timedelta(hours=2)))
    assert when.astimezone(UTC).hour == 12


def test_picks_the_largest_series_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    big = write_series(tmp_path / "a", slices=12)
    small = write_series(tmp_path / "b", slices=9)
    write_series(tmp_path / "c", slices=12, modality="MR")
    (tmp_path / "notes.txt").write_text("not DICOM")
    with caplog.at_level(logging.INFO, logger="inference"):
        volume = load_series(tmp_path)
    assert volume.series_uid == big and volume.hu.shape[0] == 12
    assert small in caplog.text and "has more" in caplog.text
    assert "non-CT" in caplog.text


def test_localizers_and_duplicates_are_ignored(tmp_path: Path) -> None:
    write_series(tmp_path)
    uid = write_series(tmp_path / "scout", slices=1, prefix="scout")
    series = load_series(tmp_path).series_uid
    assert series != uid

    def localizer(_: int, ds: Dataset) -> None:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.ImagePositionPatient = [-20.0, -20.0, 1.0]

    write_series(tmp_path / "scout2", slices=2, series_uid=series, edit=localizer, prefix="loc")
    assert load_series(tmp_path).hu.shape[0] == SLICES


def test_empty_input(tmp_path: Path) -> None:
    rejected(tmp_path, R.EMPTY_INPUT)
    rejected(tmp_path / "missing", R.EMPTY_INPUT)


def test_not_dicom(tmp_path: Path) -> None:
    (tmp_path / "a.dcm").write_bytes(b"\x00" * 300)
    (tmp_path / "b.txt").write_text("hello")
    rejected(tmp_path, R.NOT_DICOM)


def test_non_ct_modality(tmp_path: Path) -> None:
    write_series(tmp_path, modality="MR")
    assert "MR" in rejected(tmp_path, R.NON_CT_MODALITY).detail


def test_two_series_of_equal_size_are_ambiguous(tmp_path: Path) -> None:
    write_series(tmp_path / "a")
    write_series(tmp_path / "b")
    rejected(tmp_path, R.MIXED_SERIES)


def test_two_stacks_in_one_series(tmp_path: Path) -> None:
    uid = write_series(tmp_path / "a")
    write_series(tmp_path / "b", series_uid=uid, prefix="again")
    rejected(tmp_path, R.MIXED_SERIES)


def test_mixed_matrix_in_one_series(tmp_path: Path) -> None:
    def one_smaller(k: int, ds: Dataset) -> None:
        if k == 4:
            ds.Rows = ds.Columns = 16
            ds.PixelData = np.zeros((16, 16), dtype=np.uint16).tobytes()

    write_series(tmp_path, edit=one_smaller)
    rejected(tmp_path, R.MIXED_SERIES)


def test_too_few_slices(tmp_path: Path) -> None:
    write_series(tmp_path, slices=3)
    rejected(tmp_path, R.TOO_FEW_SLICES)


def test_missing_slice_is_non_uniform_spacing(tmp_path: Path) -> None:
    def gap(k: int, ds: Dataset) -> None:
        if k >= 6:
            ds.ImagePositionPatient = [-20.0, -20.0, (k + 1) * GAP_MM]

    write_series(tmp_path, edit=gap)
    rejected(tmp_path, R.NON_UNIFORM_SPACING)


def test_small_position_jitter_is_accepted(tmp_path: Path) -> None:
    def jitter(k: int, ds: Dataset) -> None:
        ds.ImagePositionPatient = [-20.0, -20.0, k * GAP_MM + (0.01 if k % 2 else -0.01)]

    write_series(tmp_path, edit=jitter)
    assert load_series(tmp_path).spacing_mm[0] == pytest.approx(GAP_MM, abs=0.03)


@pytest.mark.parametrize(
    "change",
    [
        {"PixelSpacing": [0.0, 0.7]},
        {"ImageOrientationPatient": [1, 0, 0, 1, 0, 0]},
        {"ImagePositionPatient": None},
        {"SamplesPerPixel": 3},
    ],
)
def test_implausible_dimensions(tmp_path: Path, change: dict[str, object]) -> None:
    def apply(_: int, ds: Dataset) -> None:
        for keyword, value in change.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)

    write_series(tmp_path, edit=apply)
    rejected(tmp_path, R.IMPLAUSIBLE_DIMENSIONS)


def test_tiny_matrix_is_implausible(tmp_path: Path) -> None:
    def tiny(_: int, ds: Dataset) -> None:
        ds.Rows = ds.Columns = 8
        ds.PixelData = np.zeros((8, 8), dtype=np.uint16).tobytes()

    write_series(tmp_path, edit=tiny)
    rejected(tmp_path, R.IMPLAUSIBLE_DIMENSIONS)


def test_lossy_transfer_syntax(tmp_path: Path) -> None:
    write_series(tmp_path, transfer_syntax=JPEGBaseline8Bit)
    assert "lossy" in rejected(tmp_path, R.UNSUPPORTED_TRANSFER_SYNTAX).detail


def _set_series_uid(raw: bytes) -> Edit:
    """An edit that stores ``raw`` as the SeriesInstanceUID bytes, exactly (no validation)."""

    def edit(_: int, ds: Dataset) -> None:
        tag = Tag("SeriesInstanceUID")
        ds[tag] = RawDataElement(tag, "UI", len(raw), raw, 0, False, True)

    return edit


@pytest.mark.parametrize(
    "bad_uid",
    [
        b"1.2.3; rm -rf /",
        b"../../etc",
        b"..",
        b"1.2\\3",
        b"1.2\x003.4",
        b"1.2.3\n4",
        b"1.2.\x1b[31m",
        "1.2.\u00e9".encode("latin-1"),
        b"1." + b"2" * 1100,
    ],
)
def test_hostile_uid(tmp_path: Path, bad_uid: bytes) -> None:
    write_series(tmp_path, edit=_set_series_uid(bad_uid.ljust(len(bad_uid) + len(bad_uid) % 2)))
    rejected(tmp_path, R.HOSTILE_UID)


@pytest.mark.parametrize(
    "odd_uid",
    [
        "896911bf-1143-4c8d-8f04-f3cd1a7f6204",  # UUID, as an anonymiser of COVID-CT-MD wrote
        "1.2.840.0010.01",  # leading zeros
        "1." + "2" * 70,  # over 64 characters
        "1.2.a",
        "2.25.329800735698586629295641978511506172918 ",  # trailing padding is not part of it
    ],
)
def test_harmless_nonconformant_uid_is_accepted_and_kept(tmp_path: Path, odd_uid: str) -> None:
    write_series(tmp_path, edit=_set_series_uid(odd_uid.encode().ljust(len(odd_uid) + 1, b"\0")))
    volume = load_series(tmp_path)
    assert volume.series_uid == odd_uid.rstrip()
    assert volume.hu.shape == (SLICES, MATRIX, MATRIX)
    conformant = odd_uid.startswith("2.25.")
    assert volume.nonconformant_uids == (() if conformant else ("SeriesInstanceUID",))


def test_conformant_series_is_not_flagged(tmp_path: Path) -> None:
    write_series(tmp_path)
    assert load_series(tmp_path).nonconformant_uids == ()


def test_no_pixel_data(tmp_path: Path) -> None:
    def strip(_: int, ds: Dataset) -> None:
        del ds.PixelData

    write_series(tmp_path, edit=strip)
    rejected(tmp_path, R.NO_PIXEL_DATA)


def test_no_image_pixel_module(tmp_path: Path) -> None:
    def strip(_: int, ds: Dataset) -> None:
        del ds.Rows
        del ds.PixelData

    write_series(tmp_path, edit=strip)
    rejected(tmp_path, R.NO_PIXEL_DATA)


def test_resource_limits_checked_before_decoding(tmp_path: Path) -> None:
    write_series(tmp_path)
    rejected(tmp_path, R.RESOURCE_LIMIT, max_slices=SLICES - 1)
    rejected(tmp_path, R.RESOURCE_LIMIT, max_voxels=SLICES * MATRIX * MATRIX - 1)
    rejected(tmp_path, R.RESOURCE_LIMIT, max_bytes=1000)
    rejected(tmp_path, R.RESOURCE_LIMIT, max_files=SLICES - 1)


def test_rejection_carries_reason_and_detail(tmp_path: Path) -> None:
    error = rejected(tmp_path, R.EMPTY_INPUT)
    assert str(error).startswith("empty_input: ")
    assert error.detail
