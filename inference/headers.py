"""Find the DICOM files under a path, read their headers only, and pick one CT series.

Nothing here decodes pixels: every check that can be made from headers and file sizes
(resource limits, modality, UIDs, transfer syntax) is made before a single pixel is read, so a
hostile or oversized input costs a directory walk and a few header reads.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError
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
    the largest relative deviation of one slice gap from the median gap.
    """

    max_slices: int = 2048
    max_voxels: int = 512 * 512 * 2048
    max_bytes: int = 2 * 1024**3
    max_files: int = 10_000
    min_slices: int = 8
    spacing_tolerance_fraction: float = 0.1


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
    """Read the header of each DICOM file (pixels not loaded); non-DICOM files are skipped."""
    found: list[tuple[Path, FileDataset]] = []
    skipped = 0
    for file in files:
        try:
            found.append((file, dcmread(file, stop_before_pixels=True, defer_size=_DEFER_BYTES)))
        except (InvalidDicomError, OSError, ValueError, EOFError) as e:
            skipped += 1
            logger.debug("skipped %s: not readable as DICOM (%s)", file, e)
    if skipped:
        logger.info("skipped %d of %d files that are not DICOM", skipped, len(files))
    if not found:
        raise SeriesRejected(R.NOT_DICOM, f"none of the {len(files)} files is a DICOM file")
    return found


def select_ct_series(found: list[tuple[Path, FileDataset]]) -> SeriesHeaders:
    """Keep CT images, group them by series and return the series with the most images."""
    modalities = Counter(str(ds.get("Modality", "")) or "<none>" for _, ds in found)
    ct = [(f, ds) for f, ds in found if ds.get("Modality", "") == "CT"]
    if not ct:
        raise SeriesRejected(R.NON_CT_MODALITY, f"no CT images; modalities {dict(modalities)}")
    if len(ct) < len(found):
        logger.info("ignored %d non-CT images (modalities %s)", len(found) - len(ct), modalities)
    groups: dict[str, list[tuple[Path, FileDataset]]] = defaultdict(list)
    for file, ds in ct:
        check_uid(ds, "StudyInstanceUID")
        check_uid(ds, "SOPInstanceUID")
        groups[check_uid(ds, "SeriesInstanceUID")].append((file, ds))
    ranked = sorted(groups.items(), key=lambda item: len(item[1]), reverse=True)
    series_uid, members = ranked[0]
    if len(ranked) > 1 and len(ranked[1][1]) == len(members):
        raise SeriesRejected(
            R.MIXED_SERIES,
            f"{len(ranked)} CT series, the largest two both have {len(members)} images: "
            "cannot tell which one to quantify",
        )
    for other_uid, other in ranked[1:]:
        logger.info(
            "skipped CT series %s (%d images): series %s has more (%d)",
            other_uid,
            len(other),
            series_uid,
            len(members),
        )
    members = _drop_localizers(_drop_duplicates(members))
    studies = {raw_text(ds, "StudyInstanceUID") for _, ds in members}
    if len(studies) > 1:
        raise SeriesRejected(R.MIXED_SERIES, f"series {series_uid} spans studies {sorted(studies)}")
    return SeriesHeaders(
        series_uid=series_uid,
        files=tuple(f for f, _ in members),
        headers=tuple(ds for _, ds in members),
    )


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


def _drop_duplicates(members: list[tuple[Path, FileDataset]]) -> list[tuple[Path, FileDataset]]:
    """The same SOP instance stored twice counts once."""
    unique: dict[str, tuple[Path, FileDataset]] = {}
    for file, ds in members:
        unique.setdefault(raw_text(ds, "SOPInstanceUID"), (file, ds))
    if len(unique) < len(members):
        logger.warning("ignored %d duplicate SOP instances", len(members) - len(unique))
    return list(unique.values())


def _drop_localizers(members: list[tuple[Path, FileDataset]]) -> list[tuple[Path, FileDataset]]:
    """Scout (localizer) images share some series with the axial images; they are not slices."""
    kept = [(f, ds) for f, ds in members if "LOCALIZER" not in _image_type(ds)]
    if len(kept) < len(members):
        logger.info("ignored %d localizer images", len(members) - len(kept))
    return kept


def _image_type(ds: FileDataset) -> list[str]:
    value = ds.get("ImageType", [])
    values = [value] if isinstance(value, str) else list(value)
    return [str(v).upper() for v in values]
