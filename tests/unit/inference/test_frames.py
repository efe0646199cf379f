"""Multi-frame CT (Enhanced / Legacy Converted Enhanced CT): one file, many frames, geometry in
functional groups; loaded as the same volume as the single-frame series it was made from."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import EnhancedCTImageStorage, generate_uid

from inference.exceptions import SeriesRejected, SeriesRejectionReason
from inference.frames import FrameRef, frame_value, series_frames, stack_order
from inference.volume import CtVolume, load_series

pytestmark = pytest.mark.unit

R = SeriesRejectionReason


@pytest.fixture(scope="module")
def single_frame(chest_slab: Path) -> CtVolume:
    return load_series(chest_slab)


def _rewrite(source: Path, folder: Path, edit) -> Path:  # noqa: ANN001 - a callable on Dataset
    ds = dcmread(next(source.iterdir()))
    edit(ds)
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(folder / "enhanced.dcm", enforce_file_format=True)
    return folder


def test_multiframe_loads_as_the_single_frame_series(
    enhanced_ct: Path, single_frame: CtVolume
) -> None:
    volume = load_series(enhanced_ct)
    assert volume.hu.shape == single_frame.hu.shape == (24, 512, 512)
    assert np.array_equal(volume.hu, single_frame.hu)
    assert volume.spacing_mm == pytest.approx(single_frame.spacing_mm)
    assert volume.source_files == (enhanced_ct / "enhanced.dcm",)
    assert volume.study_uid == single_frame.study_uid


def test_enhanced_ct_class_loads_too(enhanced_ct: Path, tmp_path: Path) -> None:
    def as_enhanced(ds: Dataset) -> None:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage

    assert load_series(_rewrite(enhanced_ct, tmp_path, as_enhanced)).hu.shape[0] == 24


def test_frames_stored_out_of_order_are_sorted(
    enhanced_ct: Path, single_frame: CtVolume, tmp_path: Path
) -> None:
    permutation = np.random.default_rng(3).permutation(24)

    def shuffle(ds: Dataset) -> None:
        frames = ds.pixel_array
        groups = list(ds.PerFrameFunctionalGroupsSequence)
        ds.PerFrameFunctionalGroupsSequence = [groups[int(i)] for i in permutation]
        ds.PixelData = np.ascontiguousarray(frames[permutation]).tobytes()

    folder = _rewrite(enhanced_ct, tmp_path, shuffle)
    assert np.array_equal(load_series(folder).hu, single_frame.hu)
    original = dcmread(enhanced_ct / "enhanced.dcm", stop_before_pixels=True)
    shuffled = dcmread(folder / "enhanced.dcm", stop_before_pixels=True)
    assert np.array_equal(permutation[stack_order(shuffled)], stack_order(original))


def test_geometry_comes_from_the_functional_groups(enhanced_ct: Path) -> None:
    ds = dcmread(enhanced_ct / "enhanced.dcm", stop_before_pixels=True)
    assert "ImagePositionPatient" not in ds
    frames = series_frames([ds])
    assert frames[:2] == [FrameRef(0, 0), FrameRef(0, 1)] and len(frames) == 24
    first, second = (frame_value(ds, f, "ImagePositionPatient") for f in (0, 1))
    assert abs(float(second[2]) - float(first[2])) == pytest.approx(2.0)
    assert [float(v) for v in frame_value(ds, 5, "PixelSpacing")] == pytest.approx(
        [0.6348] * 2, abs=1e-4
    )


def test_concatenation_is_refused(enhanced_ct: Path, tmp_path: Path) -> None:
    shutil.copy(enhanced_ct / "enhanced.dcm", tmp_path / "part1.dcm")

    def second_part(ds: Dataset) -> None:
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()

    _rewrite(enhanced_ct, tmp_path, second_part)
    with pytest.raises(SeriesRejected) as caught:
        load_series(tmp_path)
    assert caught.value.reason is R.MIXED_SERIES


def test_frames_without_functional_groups_are_refused(enhanced_ct: Path, tmp_path: Path) -> None:
    def strip(ds: Dataset) -> None:
        del ds.PerFrameFunctionalGroupsSequence
        del ds.SharedFunctionalGroupsSequence

    with pytest.raises(SeriesRejected) as caught:
        load_series(_rewrite(enhanced_ct, tmp_path, strip))
    assert caught.value.reason is R.IMPLAUSIBLE_DIMENSIONS
