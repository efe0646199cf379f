"""Find the DICOM files under a path and read their headers only (no pixels).

Nothing here decodes pixels: every check that can be made from headers and file sizes
(resource limits, modality, UIDs, transfer syntax) is made before a single pixel is read, so a
hostile or oversized input costs a directory walk and a few header reads.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    LegacyConvertedEnhancedCTImageStorage,
    RLELossless,
)

from inference.exceptions import SeriesRejected, SeriesRejectionReason
from inference.uids import check_uid

__all__ = [
    "CT_IMAGE_CLASSES",
    "FileSkipReason",
    "HeaderScan",
    "SeriesHeaders",
    "SkippedFile",
    "VolumeLimits",
    "check_transfer_syntax",
    "check_uid",
    "list_files",
    "quiet_pydicom",
    "raw_text",
    "read_dicom",
    "read_headers",
    "scan_headers",
]

logger = logging.getLogger(__name__)

R = SeriesRejectionReason
#: SOP classes of CT images: a file of one of these without a SOP Instance UID is a cut-off
#: member of the series, any other such file is not part of it.
CT_IMAGE_CLASSES = frozenset(
    {CTImageStorage, EnhancedCTImageStorage, LegacyConvertedEnhancedCTImageStorage}
)
#: Compressed syntaxes we accept: lossless only, since lossy coding changes HU values.
LOSSLESS_COMPRESSED = frozenset(
    {
        JPEGLossless,
        JPEGLosslessSV1,
        JPEGLSLossless,
        JPEG2000Lossless,
        RLELossless,
        HTJ2KLossless,
        HTJ2KLosslessRPCL,
    }
)
_SKIPPED_NAMES = frozenset({"DICOMDIR"})
#: Libraries whose warnings about odd values become debug logs inside ``quiet_pydicom``.
_QUIET_LOGGERS = ("pydicom", "highdicom")
#: (implicit VR, little endian) of a dataset read without file meta -> its transfer syntax
_UNCOMPRESSED = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}
_META_FROM_DATASET = (
    ("MediaStorageSOPClassUID", "SOPClassUID"),
    ("MediaStorageSOPInstanceUID", "SOPInstanceUID"),
)
#: Header values larger than this are not read (private blobs, icons): they are never used.
_DEFER_BYTES = 64 * 1024


@dataclass(frozen=True)
class VolumeLimits:
    """Bounds checked from file sizes and headers before any pixel is decoded.

    ``max_bytes`` bounds the total size of the files read, ``max_voxels`` the decoded volume
    (2 bytes per voxel), ``max_files`` the directory walk. ``spacing_tolerance_fraction`` is
    the largest relative deviation of one slice gap from the median gap; ``max_tilt_deg`` the
    largest angle between the slice normal and the line through the slice positions (gantry tilt).
    """

    max_slices: int = 2048
    max_voxels: int = 512 * 512 * 2048
    max_bytes: int = 2 * 1024**3
    max_files: int = 10_000
    min_slices: int = 8
    spacing_tolerance_fraction: float = 0.1
    max_tilt_deg: float = 1.0


@dataclass(frozen=True)
class SeriesHeaders:
    """The headers of the images of one CT series (order as found on disk)."""

    series_uid: str
    files: tuple[Path, ...]
    headers: tuple[FileDataset, ...]


def list_files(path: Path, limits: VolumeLimits) -> list[Path]:
    """Regular files under ``path`` (or ``path`` itself), checked against count and size."""
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = []
        for candidate in path.rglob("*"):  # not sorted first: stop at the limit
            if candidate.name.startswith(".") or candidate.name in _SKIPPED_NAMES:
                continue
            if candidate.is_symlink():  # a link could point anywhere on the machine
                logger.info("skipped symbolic link %s", candidate)
            elif candidate.is_file():
                files.append(candidate)
                if len(files) > limits.max_files:
                    raise SeriesRejected(
                        R.RESOURCE_LIMIT, f"more than {limits.max_files} files under {path}"
                    )
        files.sort()
    else:
        raise SeriesRejected(R.EMPTY_INPUT, f"{path} is neither a file nor a folder")
    if not files:
        raise SeriesRejected(R.EMPTY_INPUT, f"no files under {path}")
    total_bytes = sum(f.stat().st_size for f in files)
    if total_bytes > limits.max_bytes:
        raise SeriesRejected(
            R.RESOURCE_LIMIT, f"{total_bytes} bytes of files exceed the limit of {limits.max_bytes}"
        )
    return files


def raw_text(ds: Dataset, keyword: str) -> str:
    """An element's text as stored, without pydicom's value conversion (which warns on junk)."""
    element = ds.get_item(keyword)
    if element is None or element.value is None:
        return ""
    value = element.value
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace").rstrip("\x00 ")
    return str(value)


class FileSkipReason(StrEnum):
    """Why a file under the input path is not part of any series (closed list)."""

    NOT_DICOM = "not_dicom"  # neither a DICOM file nor a DICOM dataset stored without its header
    NOT_AN_INSTANCE = "not_an_instance"  # DICOM without SOP Instance UID, and not a CT image


@dataclass(frozen=True)
class SkippedFile:
    """A file that was read and left out, and why."""

    file: Path
    reason: FileSkipReason
    detail: str


@dataclass(frozen=True)
class HeaderScan:
    """The DICOM headers found under a path, and the files left out."""

    found: list[tuple[Path, FileDataset]]
    skipped: list[SkippedFile]


def read_dicom(file: Path, **options: Any) -> FileDataset:
    """Read ``file`` as DICOM; a dataset stored without the file header counts when it is one.

    A file without the 128-byte preamble and ``DICM`` prefix is read again with ``force=True``
    and kept only when it holds what every DICOM object has (SOP Class and SOP Instance UIDs
    and a Modality). Without a file meta, the transfer syntax is the uncompressed one pydicom
    found while parsing (such a stream cannot say it is compressed); it is noted in the file
    meta so that decoders and writers know it. Raises ``InvalidDicomError`` for anything else,
    and whatever pydicom raises on malformed bytes.
    """
    try:
        ds = dcmread(file, **options)
    except InvalidDicomError:
        ds = dcmread(file, force=True, **options)
        if not all(keyword in ds for keyword in ("SOPClassUID", "SOPInstanceUID", "Modality")):
            raise InvalidDicomError(f"{file.name}: no DICOM file header, no DICOM object") from None
        logger.debug("read %s without a DICOM file header", file)
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit, little = ds.original_encoding
        syntax = _UNCOMPRESSED.get((implicit is not False, little is not False))
        if syntax is None:
            raise InvalidDicomError(f"{file.name}: implicit VR big endian is no transfer syntax")
        ds.file_meta.TransferSyntaxUID = syntax
        for meta_keyword, keyword in _META_FROM_DATASET:
            if meta_keyword not in ds.file_meta and keyword in ds:
                setattr(ds.file_meta, meta_keyword, raw_text(ds, keyword))
    return ds


def scan_headers(files: list[Path]) -> HeaderScan:
    """Read the header of each DICOM file (pixels not loaded); other files are skipped, recorded.

    A file that announces itself as DICOM (``DICM`` after the preamble) but does not parse, or a
    CT image without its SOP Instance UID, is a truncated or corrupt member of a study, not a
    stray file: the input is refused. A DICOM object without SOP Instance UID that is not a CT
    image (a DICOMDIR under another name, a stray object) is skipped.
    """
    found: list[tuple[Path, FileDataset]] = []
    skipped: list[SkippedFile] = []
    for file in files:
        read = _read_header(file)
        if isinstance(read, SkippedFile):
            skipped.append(read)
            logger.debug("skipped %s: %s (%s)", file, read.reason, read.detail)
        else:
            found.append((file, read))
    if skipped:
        counts = Counter(s.reason.value for s in skipped)
        logger.info("skipped %d of %d files: %s", len(skipped), len(files), dict(counts))
    if not found:
        counts = Counter(s.reason.value for s in skipped)
        raise SeriesRejected(
            R.NOT_DICOM, f"none of the {len(files)} files is a DICOM image ({dict(counts)})"
        )
    return HeaderScan(found=found, skipped=skipped)


def read_headers(files: list[Path]) -> list[tuple[Path, FileDataset]]:
    """The DICOM headers among ``files`` (see :func:`scan_headers`), without the skipped ones."""
    return scan_headers(files).found


def _read_header(file: Path) -> FileDataset | SkippedFile:
    try:
        with quiet_pydicom():
            # Pixel Data is deferred (its offset and length are noted, its bytes not read):
            # that is what lets a cut-off file be told from a complete one.
            ds = read_dicom(file, defer_size=_DEFER_BYTES)
    # pydicom raises many types on hostile bytes (struct.error, KeyError, OverflowError, ...):
    # any of them means this file cannot be parsed, which the caller handles as a rejection.
    except Exception as e:  # noqa: BLE001
        if _looks_like_dicom(file):
            raise SeriesRejected(
                R.TRUNCATED_FILE, f"{file.name} is a DICOM file that does not parse: {e}"
            ) from e
        return SkippedFile(file, FileSkipReason.NOT_DICOM, f"not readable as DICOM: {e}"[:200])
    if "SOPInstanceUID" not in ds:
        # pydicom stops quietly at the end of a cut-off file and returns what it read (nothing
        # when the cut is inside undefined-length compressed Pixel Data); every DICOM object
        # has a SOP Instance UID, so a CT image without one ended early
        sop_class = _sop_class(ds)
        if sop_class in CT_IMAGE_CLASSES or raw_text(ds, "Modality") == "CT":
            raise SeriesRejected(
                R.TRUNCATED_FILE, f"{file.name} ends before its SOP Instance UID (truncated?)"
            )
        return SkippedFile(
            file,
            FileSkipReason.NOT_AN_INSTANCE,
            f"no SOP Instance UID; SOP class {UID(sop_class).name if sop_class else 'absent'}",
        )
    _check_complete(file, ds)
    return ds


def _sop_class(ds: FileDataset) -> str:
    meta = getattr(ds, "file_meta", None)
    from_meta = raw_text(meta, "MediaStorageSOPClassUID") if meta is not None else ""
    return from_meta or raw_text(ds, "SOPClassUID")


def _check_complete(file: Path, ds: FileDataset) -> None:
    """Reject a file that ends before its Pixel Data does."""
    element = ds.get_item("PixelData") if "PixelData" in ds else None
    tell = getattr(element, "value_tell", None)
    length = getattr(element, "length", None)
    if tell is None or length is None or length == 0xFFFFFFFF:
        return
    size = file.stat().st_size
    if tell + length > size:
        raise SeriesRejected(
            R.TRUNCATED_FILE,
            f"{file.name} is {size} bytes; its Pixel Data needs {tell + length}",
        )


def _looks_like_dicom(file: Path) -> bool:
    try:
        with file.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


class _AsDebug(logging.Handler):
    """Re-logs a library's records at debug level under this module's logger."""

    def emit(self, record: logging.LogRecord) -> None:
        logger.debug("%s: %s", record.name, record.getMessage())


@contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Turn pydicom's and highdicom's warnings about malformed values into debug logs.

    Hostile or merely non-conformant files make pydicom and highdicom warn about each odd value,
    both with ``warnings`` and with their loggers at WARNING level; those are not the caller's to
    see (the reader rejects or tolerates the file itself). ``catch_warnings`` and the loggers are
    process-wide, so another thread's warning can be turned into a debug log too while this runs.
    """
    handler = _AsDebug()
    saved = []
    for name in _QUIET_LOGGERS:
        library = logging.getLogger(name)
        saved.append((library, library.propagate))
        library.addHandler(handler)
        library.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        for library, propagate in saved:
            library.removeHandler(handler)
            library.propagate = propagate
    for warning in caught[:5]:
        logger.debug("%s: %s", warning.category.__name__, warning.message)


def check_transfer_syntax(headers: SeriesHeaders) -> None:
    """Reject a series whose transfer syntax is lossy, unknown or has no installed decoder."""
    for uid_text in sorted({str(_transfer_syntax(ds)) for ds in headers.headers}):
        uid = UID(uid_text)
        if not uid.is_transfer_syntax:
            raise SeriesRejected(
                R.UNSUPPORTED_TRANSFER_SYNTAX, f"{uid_text!r} is not a transfer syntax"
            )
        if uid.is_compressed and uid not in LOSSLESS_COMPRESSED:
            raise SeriesRejected(
                R.UNSUPPORTED_TRANSFER_SYNTAX,
                f"{uid.name} ({uid}) is lossy: compressed HU values cannot be quantified",
            )
        try:
            available = get_decoder(uid).is_available
        except NotImplementedError:
            available = False
        if not available:
            raise SeriesRejected(
                R.UNSUPPORTED_TRANSFER_SYNTAX, f"no installed decoder for {uid.name} ({uid})"
            )


def _transfer_syntax(ds: FileDataset) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
