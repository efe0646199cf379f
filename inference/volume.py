"""DICOM CT series -> Hounsfield-unit volume, validated from headers before pixels are decoded.

``load_series`` walks a folder (a series, or a study with several series), selects the series
to quantify (:mod:`inference.series`), checks limits, UIDs, transfer syntax and geometry from the
headers (orientation, uniform spacing, duplicates, gantry tilt), then decodes the slices in order
along the slice normal and rescales them to HU. Every refusal is a
:class:`~inference.exceptions.SeriesRejected` with a reason code from a closed list: files are
untrusted, so any error raised while parsing them becomes a rejection, never a crash.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from inference.exceptions import SeriesRejected, SeriesRejectionReason
from inference.frames import FrameRef, frame_value, series_frames
from inference.headers import (
    SeriesHeaders,
    SkippedFile,
    VolumeLimits,
    check_transfer_syntax,
    list_files,
    quiet_pydicom,
    raw_text,
    read_dicom,
    scan_headers,
)
from inference.series import SkippedSeries, select_series
from inference.uids import nonconformant_uids

logger = logging.getLogger(__name__)

__all__ = ["CtVolume", "VolumeLimits", "load_series"]

R = SeriesRejectionReason
MATRIX_RANGE = (16, 4096)  # rows / columns of a plausible CT image
PIXEL_SPACING_RANGE_MM = (0.05, 10.0)
SLICE_GAP_RANGE_MM = (0.1, 20.0)
ORIENTATION_TOLERANCE = 1e-3  # direction cosines of the slices must agree this closely
HU_RANGE = (-32768, 32767)  # int16


@dataclass(frozen=True)
class CtVolume:
    """A CT volume in Hounsfield units.

    ``hu`` is int16 with shape (z, y, x), z ascending along the slice normal (for an axial
    head-first scan: feet to head); ``spacing_mm`` is (z, y, x) in millimetres.
    ``study_datetime`` is timezone-aware only when the header carries TimezoneOffsetFromUTC.
    ``source_files`` are the files of the slices in the order of ``hu`` (one per slice), or the
    one file of a multi-frame image. ``skipped_files`` are the files under the path that were
    left out (not DICOM, not an image); ``nonconformant_uids`` names the UID attributes
    (Study, Series, SOP Instance) that are accepted but not conformant DICOM UIDs.
    """

    hu: np.ndarray
    spacing_mm: tuple[float, float, float]
    study_uid: str
    series_uid: str
    patient_id: str
    study_datetime: datetime | None
    skipped_series: tuple[SkippedSeries, ...] = ()
    source_files: tuple[Path, ...] = ()
    skipped_files: tuple[SkippedFile, ...] = ()
    nonconformant_uids: tuple[str, ...] = ()


#: What pydicom and the decoders raise on malformed values; turned into MALFORMED_HEADER.
_PARSE_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    struct.error,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
)


@dataclass(frozen=True)
class _Geometry:
    frames: list[FrameRef]  # sorted along the slice normal
    spacing_mm: tuple[float, float, float]
    rows: int
    columns: int


def load_series(path: Path, limits: VolumeLimits = VolumeLimits()) -> CtVolume:  # noqa: B008
    """Load the CT series under ``path`` as an HU volume, or raise ``SeriesRejected``."""
    try:
        with quiet_pydicom():
            return _load(Path(path), limits)
    except SeriesRejected:
        raise
    except _PARSE_ERRORS as e:
        raise SeriesRejected(
            R.MALFORMED_HEADER, f"{type(e).__name__} while reading {path}: {e}"
        ) from e


def _load(path: Path, limits: VolumeLimits) -> CtVolume:
    scan = scan_headers(list_files(path, limits))
    choice = select_series(scan.found, limits)
    series = choice.selected
    frames = series_frames(series.headers)
    count = len(frames)
    if count < limits.min_slices:
        raise SeriesRejected(
            R.TOO_FEW_SLICES, f"{count} CT slices, at least {limits.min_slices} needed"
        )
    if count > limits.max_slices:
        raise SeriesRejected(
            R.RESOURCE_LIMIT, f"{count} slices exceed the limit of {limits.max_slices}"
        )
    geometry = _geometry(series, frames, limits)
    voxels = count * geometry.rows * geometry.columns
    if voxels > limits.max_voxels:
        raise SeriesRejected(
            R.RESOURCE_LIMIT, f"{voxels} voxels exceed the limit of {limits.max_voxels}"
        )
    check_transfer_syntax(series)
    hu = _decode(series, geometry)
    first = series.headers[geometry.frames[0].image]
    logger.info(
        "loaded series %s: %s voxels, spacing %s mm",
        series.series_uid,
        hu.shape,
        geometry.spacing_mm,
    )
    images = dict.fromkeys(ref.image for ref in geometry.frames)  # in slice order, once each
    return CtVolume(
        hu=hu,
        spacing_mm=geometry.spacing_mm,
        study_uid=raw_text(first, "StudyInstanceUID"),
        series_uid=series.series_uid,
        patient_id=str(first.get("PatientID", "")),
        study_datetime=study_datetime(first),
        skipped_series=choice.skipped,
        source_files=tuple(series.files[i] for i in images),
        skipped_files=tuple(scan.skipped),
        nonconformant_uids=nonconformant_uids(series.headers),
    )


def _floats(ds: Dataset, frame: int | None, keyword: str, count: int) -> np.ndarray:
    value = frame_value(ds, frame, keyword)
    try:
        numbers = np.array([float(v) for v in value], dtype=np.float64) if value else None
    except (TypeError, ValueError):
        numbers = None
    if numbers is None or numbers.shape != (count,) or not np.all(np.isfinite(numbers)):
        shown = repr(value)[:80]
        raise SeriesRejected(R.IMPLAUSIBLE_DIMENSIONS, f"{keyword} missing or malformed: {shown}")
    return numbers


def _matrix(headers: tuple[Dataset, ...]) -> tuple[int, int]:
    if any(ds.get("Rows") is None or ds.get("Columns") is None for ds in headers):
        raise SeriesRejected(R.NO_PIXEL_DATA, "images without Rows/Columns (no image pixel module)")
    matrices = {(int(ds.Rows), int(ds.Columns)) for ds in headers}
    if len(matrices) != 1:
        raise SeriesRejected(R.MIXED_SERIES, f"images disagree on the matrix: {sorted(matrices)}")
    rows, columns = matrices.pop()
    if not all(MATRIX_RANGE[0] <= n <= MATRIX_RANGE[1] for n in (rows, columns)):
        raise SeriesRejected(R.IMPLAUSIBLE_DIMENSIONS, f"matrix {rows}x{columns}")
    if any(int(ds.get("SamplesPerPixel", 1)) != 1 for ds in headers):
        raise SeriesRejected(R.IMPLAUSIBLE_DIMENSIONS, "multi-sample (colour) images")
    return rows, columns


def _geometry(series: SeriesHeaders, frames: list[FrameRef], limits: VolumeLimits) -> _Geometry:
    """Check the image module and slice geometry; sort the frames along the slice normal."""
    headers = series.headers
    rows, columns = _matrix(headers)

    def per_frame(keyword: str, count: int) -> np.ndarray:
        return np.array([_floats(headers[f.image], f.frame, keyword, count) for f in frames])

    pixel = per_frame("PixelSpacing", 2)
    if np.ptp(pixel, axis=0).max() > 1e-4:
        raise SeriesRejected(R.MIXED_SERIES, "images disagree on PixelSpacing")
    dy, dx = (float(v) for v in pixel[0])
    cosines = per_frame("ImageOrientationPatient", 6)
    if np.ptp(cosines, axis=0).max() > ORIENTATION_TOLERANCE:
        raise SeriesRejected(R.MIXED_SERIES, "images disagree on ImageOrientationPatient")
    row_dir, col_dir = cosines[0, :3], cosines[0, 3:]
    if (
        abs(np.linalg.norm(row_dir) - 1) > ORIENTATION_TOLERANCE
        or abs(np.linalg.norm(col_dir) - 1) > ORIENTATION_TOLERANCE
        or abs(float(row_dir @ col_dir)) > ORIENTATION_TOLERANCE
    ):
        raise SeriesRejected(R.IMPLAUSIBLE_DIMENSIONS, f"ImageOrientationPatient {cosines[0]}")
    normal = np.cross(row_dir, col_dir)
    points = per_frame("ImagePositionPatient", 3)
    positions = points @ normal
    order = np.argsort(positions, kind="stable")
    gaps = np.diff(positions[order])
    if np.any(gaps < 1e-3):
        raise SeriesRejected(
            R.MIXED_SERIES, "two images at the same position (several stacks in one series?)"
        )
    dz = float(np.median(gaps))
    for name, value, (low, high) in (
        ("row spacing", dy, PIXEL_SPACING_RANGE_MM),
        ("column spacing", dx, PIXEL_SPACING_RANGE_MM),
        ("slice gap", dz, SLICE_GAP_RANGE_MM),
    ):
        if not low <= value <= high:
            raise SeriesRejected(R.IMPLAUSIBLE_DIMENSIONS, f"{name} {value:g} mm")
    _check_tilt(points[order], normal, limits, headers[frames[0].image])
    deviation = float(np.max(np.abs(gaps - dz)))
    if deviation > limits.spacing_tolerance_fraction * dz:
        raise SeriesRejected(
            R.NON_UNIFORM_SPACING,
            f"slice gaps {gaps.min():g}..{gaps.max():g} mm around {dz:g} mm "
            f"(tolerance {limits.spacing_tolerance_fraction:.0%}; missing slices?)",
        )
    return _Geometry(
        frames=[frames[int(i)] for i in order],
        spacing_mm=(dz, dy, dx),
        rows=rows,
        columns=columns,
    )


def _check_tilt(
    positions: np.ndarray, normal: np.ndarray, limits: VolumeLimits, first: Dataset
) -> None:
    """Reject a stack whose slice positions (sorted along the normal) drift in-plane.

    A tilted acquisition (gantry tilt) makes a sheared volume that a (z, y, x) array with one
    spacing would misrepresent.
    """
    offsets = positions - positions[0]
    along = offsets @ normal
    across = np.linalg.norm(offsets - np.outer(along, normal), axis=1)
    extent = float(abs(along[-1]))
    if extent <= 0:
        return
    tilt_deg = float(np.degrees(np.arctan2(across.max(), extent)))
    if tilt_deg > limits.max_tilt_deg:
        header = str(first.get("GantryDetectorTilt", "absent"))
        raise SeriesRejected(
            R.GANTRY_TILT,
            f"slice positions drift {tilt_deg:.2f} deg off the slice normal "
            f"(limit {limits.max_tilt_deg:g}; GantryDetectorTilt {header})",
        )


def _decode(series: SeriesHeaders, geometry: _Geometry) -> np.ndarray:
    """Decode the frames in geometric order and rescale them to int16 HU."""
    shape = (len(geometry.frames), geometry.rows, geometry.columns)
    hu = np.empty(shape, dtype=np.int16)
    decoded: tuple[int, Dataset, np.ndarray] | None = None  # the image decoded last
    for k, ref in enumerate(geometry.frames):
        if decoded is None or decoded[0] != ref.image:
            decoded = (ref.image, *_read_pixels(series.files[ref.image]))
        _, ds, pixels = decoded
        file = series.files[ref.image]
        plane = pixels if ref.frame is None or pixels.ndim == 2 else pixels[ref.frame]
        if plane.shape != shape[1:]:
            raise SeriesRejected(
                R.IMPLAUSIBLE_DIMENSIONS,
                f"{file.name}: pixel array {pixels.shape}, not {shape[1:]} per frame",
            )
        slope, intercept = _rescale(ds, ref.frame)
        values = np.rint(plane.astype(np.float32) * slope + intercept)
        np.clip(values, *HU_RANGE, out=values)
        hu[k] = values
    return hu


def _read_pixels(file: Path) -> tuple[Dataset, np.ndarray]:
    try:
        ds = read_dicom(file)
    except (*_PARSE_ERRORS, InvalidDicomError) as e:
        raise SeriesRejected(R.TRUNCATED_FILE, f"{file.name} no longer parses: {e}") from e
    if "PixelData" not in ds:
        raise SeriesRejected(R.NO_PIXEL_DATA, f"{file.name} has no Pixel Data")
    return ds, _pixels(ds, file)


def _pixels(ds: Dataset, file: Path) -> np.ndarray:
    """Decode one image; a short Pixel Data element is a truncated file, anything else corrupt."""
    try:
        return ds.pixel_array
    except _PARSE_ERRORS as e:
        text = str(e)
        truncated = "less than expected" in text or "missing" in text or "end of" in text
        reason = R.TRUNCATED_FILE if truncated else R.CORRUPT_PIXEL_DATA
        raise SeriesRejected(reason, f"{file.name}: pixels cannot be decoded: {text}") from e


def _rescale(ds: Dataset, frame: int | None) -> tuple[float, float]:
    try:
        slope_value = frame_value(ds, frame, "RescaleSlope")
        intercept_value = frame_value(ds, frame, "RescaleIntercept")
        slope = 1.0 if slope_value in (None, "") else float(slope_value)
        intercept = 0.0 if intercept_value in (None, "") else float(intercept_value)
    except (TypeError, ValueError) as e:
        raise SeriesRejected(R.IMPLAUSIBLE_DIMENSIONS, f"malformed rescale: {e}") from e
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
        raise SeriesRejected(
            R.IMPLAUSIBLE_DIMENSIONS, f"rescale slope {slope} intercept {intercept}"
        )
    return slope, intercept


def study_datetime(ds: Dataset) -> datetime | None:
    """StudyDate + StudyTime (+ TimezoneOffsetFromUTC when present); None when absent or bad."""
    date_text = str(ds.get("StudyDate", "") or "").strip()
    time_text = str(ds.get("StudyTime", "") or "").strip().split(".")[0].replace(":", "")
    if not date_text:
        return None
    try:
        when = datetime.strptime(date_text + (time_text + "000000")[:6], "%Y%m%d%H%M%S")
    except ValueError:
        logger.warning("unparseable StudyDate/StudyTime %r %r", date_text, time_text)
        return None
    offset = str(ds.get("TimezoneOffsetFromUTC", "") or "").strip()
    if len(offset) == 5 and offset[0] in "+-" and offset[1:].isdigit():
        sign = 1 if offset[0] == "+" else -1
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
        when = when.replace(tzinfo=timezone(sign * delta))
    return when
