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
from pydicom import dcmread
from pydicom.dataset import Dataset

from inference.exceptions import SeriesRejected, SeriesRejectionReason
from inference.headers import (
    SeriesHeaders,
    VolumeLimits,
    check_transfer_syntax,
    list_files,
    quiet_pydicom,
    raw_text,
    read_headers,
)
from inference.series import SkippedSeries, select_series

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
    """

    hu: np.ndarray
    spacing_mm: tuple[float, float, float]
    study_uid: str
    series_uid: str
    patient_id: str
    study_datetime: datetime | None
    skipped_series: tuple[SkippedSeries, ...] = ()
    source_files: tuple[Path, ...] = ()  # the slices' files, in the order of ``hu``


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
    order: np.ndarray  # indices into the series headers, sorted along the normal
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
    choice = select_series(read_headers(list_files(path, limits)), limits)
    series = choice.selected
    count = len(series.headers)
    if count < limits.min_slices:
        raise SeriesRejected(
            R.TOO_FEW_SLICES, f"{count} CT images, at least {limits.min_slices} needed"
        )
    if count > limits.max_slices:
        raise SeriesRejected(
            R.RESOURCE_LIMIT, f"{count} slices exceed the limit of {limits.max_slices}"
        )
    geometry = _geometry(series, limits)
    voxels = count * geometry.rows * geometry.columns
    if voxels > limits.max_voxels:
        raise SeriesRejected(
            R.RESOURCE_LIMIT, f"{voxels} voxels exceed the limit of {limits.max_voxels}"
        )
    check_transfer_syntax(series)
    hu = _decode(series, geometry)
    first = series.headers[int(geometry.order[0])]
    logger.info(
        "loaded series %s: %s voxels, spacing %s mm",
        series.series_uid,
        hu.shape,
        geometry.spacing_mm,
    )
    return CtVolume(
        hu=hu,
        spacing_mm=geometry.spacing_mm,
        study_uid=raw_text(first, "StudyInstanceUID"),
        series_uid=series.series_uid,
        patient_id=str(first.get("PatientID", "")),
        study_datetime=study_datetime(first),
        skipped_series=choice.skipped,
        source_files=tuple(series.files[int(i)] for i in geometry.order),
    )


def _floats(ds: Dataset, keyword: str, count: int) -> np.ndarray:
    value = ds.get(keyword)
    try:
        numbers = np.array([float(v) for v in value], dtype=np.float64) if value else None
    except (TypeError, ValueError):
        numbers = None
    if numbers is None or numbers.shape != (count,) or not np.all(np.isfinite(numbers)):
        shown = repr(value)[:80]
        raise SeriesRejected(R.IMPLAUSIBLE_DIMENSIONS, f"{keyword} missing or malformed: {shown}")
    return numbers


def _geometry(series: SeriesHeaders, limits: VolumeLimits) -> _Geometry:
    """Check the image module and slice geometry; sort the slices along the slice normal."""
    headers = series.headers
    if any(ds.get("Rows") is None or ds.get("Columns") is None for ds in headers):
        raise SeriesRejected(R.NO_PIXEL_DATA, "images without Rows/Columns (no image pixel module)")
    matrices = {(int(ds.Rows), int(ds.Columns)) for ds in headers}
    if len(matrices) != 1:
        raise SeriesRejected(R.MIXED_SERIES, f"images disagree on the matrix: {sorted(matrices)}")
    rows, columns = matrices.pop()
    if not all(MATRIX_RANGE[0] <= n <= MATRIX_RANGE[1] for n in (rows, columns)):
        raise SeriesRejected(R.IMPLAUSIBLE_DIMENSIONS, f"matrix {rows}x{columns}")
    for ds in headers:
        if int(ds.get("NumberOfFrames", 1) or 1) != 1 or int(ds.get("SamplesPerPixel", 1)) != 1:
            raise SeriesRejected(
                R.IMPLAUSIBLE_DIMENSIONS, "multi-frame or multi-sample images are not supported"
            )
    pixel = np.array([_floats(ds, "PixelSpacing", 2) for ds in headers])
    if np.ptp(pixel, axis=0).max() > 1e-4:
        raise SeriesRejected(R.MIXED_SERIES, "images disagree on PixelSpacing")
    dy, dx = (float(v) for v in pixel[0])
    cosines = np.array([_floats(ds, "ImageOrientationPatient", 6) for ds in headers])
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
    positions = np.array([_floats(ds, "ImagePositionPatient", 3) @ normal for ds in headers])
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
    _check_tilt(headers, order, normal, limits)
    deviation = float(np.max(np.abs(gaps - dz)))
    if deviation > limits.spacing_tolerance_fraction * dz:
        raise SeriesRejected(
            R.NON_UNIFORM_SPACING,
            f"slice gaps {gaps.min():g}..{gaps.max():g} mm around {dz:g} mm "
            f"(tolerance {limits.spacing_tolerance_fraction:.0%}; missing slices?)",
        )
    return _Geometry(order=order, spacing_mm=(dz, dy, dx), rows=rows, columns=columns)


def _check_tilt(
    headers: tuple[Dataset, ...], order: np.ndarray, normal: np.ndarray, limits: VolumeLimits
) -> None:
    """Reject a stack whose slice positions drift in-plane (gantry tilt).

    A tilted acquisition makes a sheared volume that a (z, y, x) array with one spacing would
    misrepresent.
    """
    positions = np.array([_floats(headers[int(i)], "ImagePositionPatient", 3) for i in order])
    offsets = positions - positions[0]
    along = offsets @ normal
    across = np.linalg.norm(offsets - np.outer(along, normal), axis=1)
    extent = float(abs(along[-1]))
    if extent <= 0:
        return
    tilt_deg = float(np.degrees(np.arctan2(across.max(), extent)))
    if tilt_deg > limits.max_tilt_deg:
        header = str(headers[int(order[0])].get("GantryDetectorTilt", "absent"))
        raise SeriesRejected(
            R.GANTRY_TILT,
            f"slice positions drift {tilt_deg:.2f} deg off the slice normal "
            f"(limit {limits.max_tilt_deg:g}; GantryDetectorTilt {header})",
        )


def _decode(series: SeriesHeaders, geometry: _Geometry) -> np.ndarray:
    """Decode the slices in geometric order and rescale them to int16 HU."""
    shape = (len(geometry.order), geometry.rows, geometry.columns)
    hu = np.empty(shape, dtype=np.int16)
    for k, index in enumerate(geometry.order):
        file = series.files[int(index)]
        try:
            ds = dcmread(file)
        except _PARSE_ERRORS as e:
            raise SeriesRejected(R.TRUNCATED_FILE, f"{file.name} no longer parses: {e}") from e
        if "PixelData" not in ds:
            raise SeriesRejected(R.NO_PIXEL_DATA, f"{file.name} has no Pixel Data")
        pixels = _pixels(ds, file)
        if pixels.shape != shape[1:]:
            raise SeriesRejected(
                R.IMPLAUSIBLE_DIMENSIONS,
                f"{file.name}: pixel array {pixels.shape}, not {shape[1:]}",
            )
        slope, intercept = _rescale(ds)
        values = np.rint(pixels.astype(np.float32) * slope + intercept)
        np.clip(values, *HU_RANGE, out=values)
        hu[k] = values
    return hu


def _pixels(ds: Dataset, file: Path) -> np.ndarray:
    """Decode one image; a short Pixel Data element is a truncated file, anything else corrupt."""
    try:
        return ds.pixel_array
    except _PARSE_ERRORS as e:
        text = str(e)
        truncated = "less than expected" in text or "missing" in text or "end of" in text
        reason = R.TRUNCATED_FILE if truncated else R.CORRUPT_PIXEL_DATA
        raise SeriesRejected(reason, f"{file.name}: pixels cannot be decoded: {text}") from e


def _rescale(ds: Dataset) -> tuple[float, float]:
    try:
        slope = float(ds.get("RescaleSlope", 1.0))
        intercept = float(ds.get("RescaleIntercept", 0.0))
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
