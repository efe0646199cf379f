"""Series selection in a multi-series study, geometry checks, decoders and hostile files."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import GAP_MM, MATRIX, truth_hu, write_ct_series
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.tag import Tag
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from inference.exceptions import SeriesRejected, SeriesRejectionReason
from inference.series import SkipReason
from inference.volume import CtVolume, VolumeLimits, load_series

pytestmark = pytest.mark.unit

R = SeriesRejectionReason


def rejected(path: Path, reason: SeriesRejectionReason) -> SeriesRejected:
    with pytest.raises(SeriesRejected) as caught:
        load_series(path)
    assert caught.value.reason is reason, caught.value
    return caught.value


def kernel(name: str):  # noqa: ANN201
    def apply(_: int, ds: Dataset) -> None:
        ds.ConvolutionKernel = name

    return apply


def test_lung_kernel_wins_and_the_other_series_is_recorded(tmp_path: Path) -> None:
    soft = write_ct_series(tmp_path / "soft", 12, edit=kernel("B31f"))
    lung = write_ct_series(tmp_path / "lung", 10, edit=kernel("B70f"))
    volume = load_series(tmp_path)
    assert volume.series_uid == lung
    [skip] = volume.skipped_series
    assert skip.series_uid == soft and skip.reason is SkipReason.NOT_PREFERRED
    assert "other kernel" in skip.detail


def test_thinner_slices_win_over_more_images(tmp_path: Path) -> None:
    def thick(k: int, ds: Dataset) -> None:
        ds.SliceThickness = 5.0

    write_ct_series(tmp_path / "thick", 14, edit=thick)
    thin = write_ct_series(tmp_path / "thin", 10)
    assert load_series(tmp_path).series_uid == thin


def test_axial_wins_over_a_coronal_reformat(tmp_path: Path) -> None:
    def coronal(k: int, ds: Dataset) -> None:
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        ds.ImagePositionPatient = [-20.0, k * GAP_MM, 0.0]
        ds.SliceThickness = 1.0

    write_ct_series(tmp_path / "cor", 16, edit=coronal)
    axial = write_ct_series(tmp_path / "ax", 10)
    assert load_series(tmp_path).series_uid == axial


def test_scout_series_and_small_series_are_skipped_with_reasons(tmp_path: Path) -> None:
    def scout(_: int, ds: Dataset) -> None:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]

    scout_uid = write_ct_series(tmp_path / "scout", 2, edit=scout)
    small_uid = write_ct_series(tmp_path / "small", 3)
    main = write_ct_series(tmp_path / "main", 10)
    volume = load_series(tmp_path)
    assert volume.series_uid == main
    reasons = {s.series_uid: s.reason for s in volume.skipped_series}
    assert reasons == {scout_uid: SkipReason.LOCALIZER, small_uid: SkipReason.TOO_FEW_IMAGES}


def test_localizer_only(tmp_path: Path) -> None:
    def scout(_: int, ds: Dataset) -> None:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]

    write_ct_series(tmp_path, 10, edit=scout)
    rejected(tmp_path, R.LOCALIZER_ONLY)


def test_gantry_tilt(tmp_path: Path) -> None:
    def tilted(k: int, ds: Dataset) -> None:
        ds.ImagePositionPatient = [-20.0, -20.0 + k * GAP_MM * 0.3, k * GAP_MM]
        ds.GantryDetectorTilt = 16.7

    write_ct_series(tmp_path, edit=tilted)
    assert "deg" in rejected(tmp_path, R.GANTRY_TILT).detail


def test_tilt_tolerance_is_configurable(tmp_path: Path) -> None:
    def slight(k: int, ds: Dataset) -> None:
        ds.ImagePositionPatient = [-20.0, -20.0 + k * GAP_MM * 0.03, k * GAP_MM]

    write_ct_series(tmp_path, edit=slight)
    with pytest.raises(SeriesRejected):
        load_series(tmp_path, VolumeLimits(max_tilt_deg=1.0))
    assert load_series(tmp_path, VolumeLimits(max_tilt_deg=2.0)).hu.shape[0] == 10


def test_duplicate_position_is_mixed(tmp_path: Path) -> None:
    def doubled(k: int, ds: Dataset) -> None:
        if k == 9:
            ds.ImagePositionPatient = [-20.0, -20.0, 8 * GAP_MM]

    write_ct_series(tmp_path, edit=doubled)
    rejected(tmp_path, R.MIXED_SERIES)


def _cut(file: Path, keep: int) -> None:
    file.write_bytes(file.read_bytes()[:keep])


def test_truncated_pixel_data(tmp_path: Path) -> None:
    write_ct_series(tmp_path)
    file = sorted(tmp_path.iterdir())[3]
    _cut(file, file.stat().st_size - 100)
    rejected(tmp_path, R.TRUNCATED_FILE)


def test_truncated_header(tmp_path: Path) -> None:
    write_ct_series(tmp_path)
    _cut(sorted(tmp_path.iterdir())[3], 300)
    rejected(tmp_path, R.TRUNCATED_FILE)


def test_malformed_header_value(tmp_path: Path) -> None:
    def junk_slope(_: int, ds: Dataset) -> None:
        tag = Tag("RescaleSlope")
        ds[tag] = RawDataElement(tag, "DS", 4, b"abc ", 0, False, True)

    write_ct_series(tmp_path, edit=junk_slope)
    rejected(tmp_path, R.IMPLAUSIBLE_DIMENSIONS)


def test_corrupt_compressed_pixel_data(tmp_path: Path) -> None:
    def garbage(_: int, ds: Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = JPEGLSLossless
        ds.PixelData = encapsulate([b"\xff\xd8" + bytes(range(256)) * 4])

    write_ct_series(tmp_path, edit=garbage)
    rejected(tmp_path, R.CORRUPT_PIXEL_DATA)


@pytest.mark.parametrize("syntax", [JPEGLSLossless, JPEG2000Lossless, RLELossless])
def test_lossless_compressed_series_decode_exactly(tmp_path: Path, syntax: str) -> None:
    def compress(_: int, ds: Dataset) -> None:
        ds.compress(syntax)

    write_ct_series(tmp_path, edit=compress)
    assert str(dcmread(next(tmp_path.iterdir())).file_meta.TransferSyntaxUID) == syntax
    volume = load_series(tmp_path)
    for k in range(10):
        np.testing.assert_array_equal(volume.hu[k], truth_hu(k))


# --- fuzzing: whatever bytes arrive, the reader answers with a volume or a typed rejection ---

_FUZZ_SLICES = 8
_FUZZ_MATRIX = 16


@pytest.fixture(scope="module")
def fuzz_seed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("fuzz-seed")
    write_ct_series(folder, _FUZZ_SLICES, matrix=_FUZZ_MATRIX)
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


mutation = st.tuples(st.integers(min_value=0, max_value=1200), st.binary(min_size=1, max_size=8))


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    target=st.integers(min_value=0, max_value=_FUZZ_SLICES - 1),
    mutations=st.lists(mutation, min_size=0, max_size=6),
    truncate_at=st.one_of(st.none(), st.integers(min_value=0, max_value=1400)),
    also_all=st.booleans(),
)
def test_fuzzed_files_give_a_volume_or_a_typed_rejection(
    fuzz_seed: dict[str, bytes],
    target: int,
    mutations: list[tuple[int, bytes]],
    truncate_at: int | None,
    also_all: bool,
) -> None:
    names = sorted(fuzz_seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for index, name in enumerate(names):
            data = bytearray(fuzz_seed[name])
            if index == target or also_all:
                for position, chunk in mutations:
                    data[position : position + len(chunk)] = chunk
                if truncate_at is not None:
                    del data[truncate_at:]
            (folder / name).write_bytes(bytes(data))
        try:
            volume = load_series(folder)
        except SeriesRejected as e:
            assert isinstance(e.reason, SeriesRejectionReason)
            return
        assert isinstance(volume, CtVolume)
        assert volume.hu.shape[1:] == (_FUZZ_MATRIX, _FUZZ_MATRIX)


def test_matrix_of_the_factory_is_what_the_tests_assume() -> None:
    assert truth_hu(0).shape == (MATRIX, MATRIX)
