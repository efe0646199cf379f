"""Find the DICOM files under a path and read their headers only (no pixels).

Nothing here decodes pixels: every check that can be made from headers and file sizes
(resource limits, modality, UIDs, transfer syntax) is made before a single pixel is read, so a
hostile or oversized input costs a directory walk and a few header reads.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileDataset
from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from inference.exceptions import SeriesRejected, SeriesRejectionReason

logger = logging.getLogger(__name__)

R = SeriesRejectionReason
#: DICOM UIDs are at most 64 characters of digits and dots (PS3.5 section 9.1).
UID_PATTERN = re.compile(r"[0-9]+(\.[0-9]+)*")
UID_MAX_CHARS = 64
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


def check_uid(ds: Dataset, keyword: str) -> str:
    """Return the UID in ``keyword``, or reject it as hostile (too long, not digits and dots)."""
    text = raw_text(ds, keyword)
    if len(text) > UID_MAX_CHARS or not UID_PATTERN.fullmatch(text):
        raise SeriesRejected(R.HOSTILE_UID, f"{keyword} {text[:80]!r} is not a valid DICOM UID")
    return text


def read_headers(files: list[Path]) -> list[tuple[Path, FileDataset]]:
    """Read the header of each DICOM file (pixels not loaded); non-DICOM files are skipped.

    A file that announces itself as DICOM (``DICM`` after the preamble) but does not parse is
    a truncated or corrupt member of a study, not a stray file: the input is refused.
    """
    found: list[tuple[Path, FileDataset]] = []
    skipped = 0
    for file in files:
        try:
            with quiet_pydicom():
                # Pixel Data is deferred (its offset and length are noted, its bytes not read):
                # that is what lets a cut-off file be told from a complete one.
                ds = dcmread(file, defer_size=_DEFER_BYTES)
        # pydicom raises many types on hostile bytes (struct.error, KeyError, OverflowError, ...):
        # any of them means this file cannot be parsed, which the caller handles as a rejection.
        except Exception as e:  # noqa: BLE001
            if _looks_like_dicom(file):
                raise SeriesRejected(
                    R.TRUNCATED_FILE, f"{file.name} is a DICOM file that does not parse: {e}"
                ) from e
            skipped += 1
            logger.debug("skipped %s: not readable as DICOM (%s)", file, e)
            continue
        _check_complete(file, ds)
        found.append((file, ds))
    if skipped:
        logger.info("skipped %d of %d files that are not DICOM", skipped, len(files))
    if not found:
        raise SeriesRejected(R.NOT_DICOM, f"none of the {len(files)} files is a DICOM file")
    return found


def _check_complete(file: Path, ds: FileDataset) -> None:
    """Reject a file that ends before its Pixel Data does, or before its SOP Instance UID.

    pydicom stops quietly at the end of a cut-off file and returns what it read; every DICOM
    object has a SOP Instance UID, so a dataset without one ended early.
    """
    if "SOPInstanceUID" not in ds:
        raise SeriesRejected(
            R.TRUNCATED_FILE, f"{file.name} ends before its SOP Instance UID (truncated?)"
        )
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


@contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Turn pydicom's warnings about malformed values into debug logs.

    Hostile files make pydicom warn about each bad value; those warnings are not the caller's to
    see (the reader rejects or tolerates the file itself). ``catch_warnings`` is process-wide, so
    another thread's warning can be swallowed too while a file is read; it is still logged.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught[:5]:
        logger.debug("pydicom: %s", warning.message)


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
