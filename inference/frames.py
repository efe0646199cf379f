"""The frames of a CT series, for single-frame and multi-frame images alike.

A classic CT series stores one slice per file, its geometry in top-level attributes. Enhanced CT
(and Legacy Converted Enhanced CT) store a whole stack in one file: the position, orientation,
pixel spacing and rescale of each frame sit in its per-frame functional groups, or in the shared
ones. :func:`series_frames` lists the frames of a series and :func:`frame_value` reads an
attribute of one frame from wherever its layout keeps it, so that the geometry checks and the
decoder (:mod:`inference.volume`) handle one kind of thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from inference.exceptions import SeriesRejected, SeriesRejectionReason

__all__ = [
    "FrameRef",
    "frame_value",
    "is_multiframe",
    "number_of_frames",
    "series_frames",
    "stack_order",
]

R = SeriesRejectionReason
#: Attribute -> the functional group macro that holds it in a multi-frame image.
_GROUP_OF = {
    "ImagePositionPatient": "PlanePositionSequence",
    "ImageOrientationPatient": "PlaneOrientationSequence",
    "PixelSpacing": "PixelMeasuresSequence",
    "SliceThickness": "PixelMeasuresSequence",
    "RescaleSlope": "PixelValueTransformationSequence",
    "RescaleIntercept": "PixelValueTransformationSequence",
}


@dataclass(frozen=True)
class FrameRef:
    """One slice of a series: an image, and a frame of it when the image is multi-frame."""

    image: int  # index into the series' headers and files
    frame: int | None  # 0-based frame of a multi-frame image; None for a single-frame image


def number_of_frames(ds: Dataset) -> int:
    """Number of Frames (1 when absent); a malformed count is an implausible dimension."""
    element = ds.get_item("NumberOfFrames")
    value = None if element is None else element.value
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace").strip("\x00 ")
    if value in (None, ""):
        return 1
    try:
        count = int(str(value).strip())
    except ValueError:
        raise SeriesRejected(
            R.IMPLAUSIBLE_DIMENSIONS, f"NumberOfFrames {str(value)[:20]!r}"
        ) from None
    if count < 1:
        raise SeriesRejected(R.IMPLAUSIBLE_DIMENSIONS, f"NumberOfFrames {count}")
    return count


def is_multiframe(ds: Dataset) -> bool:
    """True for an image whose frames are described by functional groups (Enhanced CT)."""
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def series_frames(headers: Sequence[Dataset]) -> list[FrameRef]:
    """Every frame of the images of one series, image by image, frame by frame.

    One multi-frame image is a whole series; several multi-frame images in one series (a
    concatenation), or a multi-frame image among single-frame ones, are refused as a mixed series.
    """
    counts = [number_of_frames(ds) for ds in headers]
    if len(headers) > 1 and any(count > 1 for count in counts):
        raise SeriesRejected(
            R.MIXED_SERIES,
            f"{len(headers)} images in the series and some are multi-frame "
            "(concatenations and mixed layouts are not supported)",
        )
    frames: list[FrameRef] = []
    for index, (ds, count) in enumerate(zip(headers, counts, strict=True)):
        if is_multiframe(ds):
            frames.extend(FrameRef(index, frame) for frame in range(count))
        elif count == 1:
            frames.append(FrameRef(index, None))
        else:
            raise SeriesRejected(
                R.IMPLAUSIBLE_DIMENSIONS,
                f"{count} frames without functional groups: no position for each frame",
            )
    return frames


def frame_value(ds: Dataset, frame: int | None, keyword: str) -> Any:
    """The value of ``keyword`` for ``frame`` of ``ds``: per-frame group, shared group, top level.

    ``None`` when no layout holds it. Malformed functional groups raise what pydicom raises
    (IndexError, TypeError, ...): :func:`inference.volume.load_series` turns that into a
    rejection.
    """
    group = _GROUP_OF.get(keyword)
    if frame is not None and group is not None:
        for item in _group_items(ds, frame, group):
            if keyword in item:
                return item[keyword].value
    element = ds.get_item(keyword)
    if element is None:
        return None
    return ds[keyword].value


def _group_items(ds: Dataset, frame: int, group: str) -> list[Dataset]:
    items: list[Dataset] = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame:
        if frame >= len(per_frame):
            raise SeriesRejected(
                R.IMPLAUSIBLE_DIMENSIONS,
                f"frame {frame + 1} has no per-frame functional group ({len(per_frame)} given)",
            )
        items.extend(per_frame[frame].get(group) or [])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        items.extend(shared[0].get(group) or [])
    return items


def stack_order(ds: Dataset) -> np.ndarray:
    """Frame indices of a multi-frame image sorted along its slice normal (the volume's order).

    The same order as :func:`inference.volume.load_series` gives the frames: positions projected
    on the normal of the first frame's orientation, stable sort.
    """
    count = number_of_frames(ds)
    cosines = np.array([float(v) for v in frame_value(ds, 0, "ImageOrientationPatient")])
    normal = np.cross(cosines[:3], cosines[3:])
    positions = [
        np.array([float(v) for v in frame_value(ds, frame, "ImagePositionPatient")]) @ normal
        for frame in range(count)
    ]
    return np.argsort(np.asarray(positions), kind="stable")
