"""Pick the series to quantify in a study, and say why every other series was not picked.

A study often holds several series: scouts (localizers), thick and thin reconstructions, soft
tissue and lung kernels, reformats, dose reports. The quantifier wants one axial CT stack of
thin slices, preferably reconstructed with a lung (sharp) kernel. Eligibility and ranking use
headers only; geometry is checked later on the chosen series (:mod:`inference.volume`).
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydicom.dataset import FileDataset
from pydicom.multival import MultiValue

from inference.exceptions import SeriesRejected, SeriesRejectionReason
from inference.frames import frame_value, is_multiframe, number_of_frames
from inference.headers import SeriesHeaders, VolumeLimits, check_uid, raw_text

logger = logging.getLogger(__name__)

R = SeriesRejectionReason
#: An axial stack's normal is within this angle of the patient's z axis.
AXIAL_MAX_ANGLE_DEG = 10.0
#: Sharp reconstruction kernels used for lung reading, by vendor naming (Siemens B/Br/Bl/I/Hr
#: with sharpness >= 50, GE LUNG/BONE/BONEPLUS, Philips L/YA-YD, Canon FC5x/FC8x).
_LUNG_KERNEL = re.compile(
    r"LUNG|BONE|^(B|BR|BL|I|HR)(5\d|6\d|7\d|8\d|9\d)|^(L|YA|YB|YC|YD)$|^FC(5\d|8\d)", re.I
)


_GEOMETRY = frozenset({"ImageOrientationPatient", "SliceThickness"})


class SkipReason(StrEnum):
    """Why a series of the study was not the one quantified."""

    NOT_CT = "not_ct"
    LOCALIZER = "localizer"
    TOO_FEW_IMAGES = "too_few_images"
    NOT_PREFERRED = "not_preferred"


@dataclass(frozen=True)
class SkippedSeries:
    """A series that was not selected, and why."""

    series_uid: str
    reason: SkipReason
    detail: str


@dataclass(frozen=True)
class SeriesChoice:
    """The series to quantify and the record of the others."""

    selected: SeriesHeaders
    skipped: tuple[SkippedSeries, ...]


@dataclass(frozen=True)
class _Candidate:
    series_uid: str
    members: list[tuple[Path, FileDataset]]
    slices: int  # frames of all members (one per single-frame image)
    axial: bool
    lung_kernel: bool
    thickness_mm: float
    description: str

    @property
    def rank(self) -> tuple[bool, bool, float, int]:
        # axial first, then a lung kernel, then thinner slices, then more slices
        return (self.axial, self.lung_kernel, -self.thickness_mm, self.slices)

    def summary(self) -> str:
        kernel = "lung kernel" if self.lung_kernel else "other kernel"
        plane = "axial" if self.axial else "not axial"
        thickness = f"{self.thickness_mm:g} mm" if math.isfinite(self.thickness_mm) else "? mm"
        return f"{self.slices} slices, {plane}, {kernel}, {thickness}"


def select_series(found: list[tuple[Path, FileDataset]], limits: VolumeLimits) -> SeriesChoice:
    """Choose the CT series to quantify among the headers ``found`` (any number of series)."""
    modalities = Counter(raw_text(ds, "Modality") or "<none>" for _, ds in found)
    groups: dict[str, list[tuple[Path, FileDataset]]] = defaultdict(list)
    skipped: list[SkippedSeries] = []
    non_ct: dict[str, int] = Counter()
    for file, ds in found:
        if raw_text(ds, "Modality") != "CT":
            non_ct[raw_text(ds, "SeriesInstanceUID")[:64] or "<none>"] += 1
            continue
        check_uid(ds, "StudyInstanceUID")
        check_uid(ds, "SOPInstanceUID")
        groups[check_uid(ds, "SeriesInstanceUID")].append((file, ds))
    for uid, count in non_ct.items():
        skipped.append(SkippedSeries(uid, SkipReason.NOT_CT, f"{count} non-CT images"))
    if non_ct:
        logger.info("ignored non-CT images (modalities %s)", dict(modalities))
    if not groups:
        raise SeriesRejected(R.NON_CT_MODALITY, f"no CT images; modalities {dict(modalities)}")

    candidates: list[_Candidate] = []
    for uid, members in groups.items():
        images = _drop_localizers(_drop_duplicates(members))
        slices = sum(number_of_frames(ds) for _, ds in images)
        if not images:
            skipped.append(SkippedSeries(uid, SkipReason.LOCALIZER, f"{len(members)} localizers"))
        elif slices < limits.min_slices:
            skipped.append(
                SkippedSeries(
                    uid,
                    SkipReason.TOO_FEW_IMAGES,
                    f"{slices} slices, at least {limits.min_slices} needed",
                )
            )
        else:
            candidates.append(_candidate(uid, images, slices))
    if not candidates:
        raise _nothing_eligible(skipped)

    candidates.sort(key=lambda c: c.rank, reverse=True)
    best = candidates[0]
    if len(candidates) > 1 and candidates[1].rank == best.rank:
        raise SeriesRejected(
            R.MIXED_SERIES,
            f"{len(candidates)} CT series, the best two are alike ({best.summary()}): "
            "cannot tell which one to quantify",
        )
    for other in candidates[1:]:
        skipped.append(
            SkippedSeries(
                other.series_uid,
                SkipReason.NOT_PREFERRED,
                f"{other.summary()}; series {best.series_uid} has more or is preferred "
                f"({best.summary()})",
            )
        )
    for skip in skipped:
        logger.info("skipped series %s: %s (%s)", skip.series_uid, skip.reason, skip.detail)
    studies = {raw_text(ds, "StudyInstanceUID") for _, ds in best.members}
    if len(studies) > 1:
        raise SeriesRejected(
            R.MIXED_SERIES, f"series {best.series_uid} spans studies {sorted(studies)}"
        )
    selected = SeriesHeaders(
        series_uid=best.series_uid,
        files=tuple(f for f, _ in best.members),
        headers=tuple(ds for _, ds in best.members),
    )
    return SeriesChoice(selected=selected, skipped=tuple(skipped))


def _nothing_eligible(skipped: list[SkippedSeries]) -> SeriesRejected:
    reasons = {s.reason for s in skipped}
    summary = "; ".join(f"{s.series_uid}: {s.detail}" for s in skipped)[:500]
    if SkipReason.TOO_FEW_IMAGES in reasons:
        return SeriesRejected(R.TOO_FEW_SLICES, f"no CT series is large enough ({summary})")
    return SeriesRejected(R.LOCALIZER_ONLY, f"only localizer images ({summary})")


def _candidate(uid: str, images: list[tuple[Path, FileDataset]], slices: int) -> _Candidate:
    first = images[0][1]
    kernel = " ".join(_strings(first, "ConvolutionKernel"))
    return _Candidate(
        series_uid=uid,
        members=images,
        slices=slices,
        axial=is_axial(first),
        lung_kernel=bool(kernel and _LUNG_KERNEL.search(kernel.strip())),
        thickness_mm=_float(first, "SliceThickness"),
        description=raw_text(first, "SeriesDescription")[:64],
    )


def is_axial(ds: FileDataset) -> bool:
    """Tell whether the image plane is axial (its normal close to the patient z axis)."""
    values = _strings(ds, "ImageOrientationPatient")
    try:
        row = [float(v) for v in values[:3]]
        col = [float(v) for v in values[3:6]]
    except ValueError:
        return False
    if len(row) != 3 or len(col) != 3:
        return False
    normal_z = row[0] * col[1] - row[1] * col[0]
    norm = math.dist((0, 0, 0), row) * math.dist((0, 0, 0), col)
    if not norm or not math.isfinite(normal_z / norm):
        return False
    return abs(normal_z / norm) >= math.cos(math.radians(AXIAL_MAX_ANGLE_DEG))


def _strings(ds: FileDataset, keyword: str) -> list[str]:
    """A multi-valued text element as strings, without pydicom's value conversion.

    For a multi-frame image, geometry attributes are those of its first frame.
    """
    if is_multiframe(ds) and keyword in _GEOMETRY:
        value = frame_value(ds, 0, keyword)
    else:
        element = ds.get_item(keyword)
        value = None if element is None else element.value
    if value is None:
        return []
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace").rstrip("\x00 ")
    if isinstance(value, str):
        return [v.strip() for v in value.split("\\")]
    if isinstance(value, list | tuple | MultiValue):
        return [str(v).strip() for v in value]
    return [str(value).strip()]


def _float(ds: FileDataset, keyword: str) -> float:
    try:
        value = float((_strings(ds, keyword) or [""])[0])
    except ValueError:
        return math.inf
    return value if math.isfinite(value) and value > 0 else math.inf


def _drop_duplicates(members: list[tuple[Path, FileDataset]]) -> list[tuple[Path, FileDataset]]:
    """The same SOP instance stored twice counts once."""
    unique: dict[str, tuple[Path, FileDataset]] = {}
    for file, ds in members:
        unique.setdefault(raw_text(ds, "SOPInstanceUID"), (file, ds))
    if len(unique) < len(members):
        logger.warning("ignored %d duplicate SOP instances", len(members) - len(unique))
    return list(unique.values())


def _drop_localizers(members: list[tuple[Path, FileDataset]]) -> list[tuple[Path, FileDataset]]:
    """Scout (localizer) images may share a series with the axial images; they are not slices."""
    kept = [(f, ds) for f, ds in members if "LOCALIZER" not in _image_type(ds)]
    if len(kept) < len(members):
        logger.info("ignored %d localizer images", len(members) - len(kept))
    return kept


def _image_type(ds: FileDataset) -> list[str]:
    return [v.upper() for v in _strings(ds, "ImageType")]
