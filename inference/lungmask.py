"""Threshold lung mask and the slice-wise morphology the biomarkers need.

The mask is built on in-plane blocks of about ``WORKING_SPACING_MM`` (block-mean HU): labelling,
closing and hole filling on a 512x512 matrix cost four times more and change the volume by less
than the block size along the border. At full resolution, voxels on the mask's one-block-wide
border are then kept only when they are themselves air-like, so the border is not blocky.
All morphology is in-plane (per slice), restricted to the bounding box of the lungs.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import ndimage

from inference.slabs import along_z

logger = logging.getLogger(__name__)

AIR_LIKE_BELOW_HU = -320  # lung parenchyma and air; soft tissue, fat and bone are above
WORKING_SPACING_MM = 1.5
#: Slice-wise closing radius: pulls juxtapleural lesions (dense, so not air-like) into the mask.
CLOSING_RADIUS_MM = 6.0
#: A second air component is a lung only if it is at least this fraction of the largest one
#: (otherwise it is gas in the stomach or bowel, or a cavity in the table).
SECOND_LUNG_MIN_FRACTION = 0.25
#: Smallest air component that may be called lung (noise and small gas pockets are not).
MIN_LUNG_ML = 10.0

IN_PLANE_CROSS = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE_CROSS[1] = ndimage.generate_binary_structure(2, 1)  # 4-connected, no z neighbours
_CROSS = IN_PLANE_CROSS[1:2]  # (1, 3, 3) for erosion / dilation

Box = tuple[slice, slice, slice]


def bounding_box(mask: np.ndarray) -> Box | None:
    """Smallest box holding every True voxel of a 3-D mask; None when there is none."""
    spans = []
    for axis in range(3):
        hit = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(3) if a != axis)))
        if hit.size == 0:
            return None
        spans.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return spans[0], spans[1], spans[2]


def block_factors(dy_mm: float, dx_mm: float) -> tuple[int, int]:
    """In-plane block size (voxels) that brings the spacing close to ``WORKING_SPACING_MM``."""
    return (
        max(1, int(WORKING_SPACING_MM / dy_mm + 1e-6)),
        max(1, int(WORKING_SPACING_MM / dx_mm + 1e-6)),
    )


def coarse_air(hu: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """Air-like blocks (block mean below the threshold) on a grid of (fy, fx) voxel blocks.

    Rows of a block are summed first (whole rows at a time), then its columns: half the time
    of one strided pass per voxel of the block, the same sums.
    """
    z, y, x = hu.shape
    y_end, x_end = y - y % fy, x - x % fx
    exact = np.issubdtype(hu.dtype, np.integer) and hu.dtype.itemsize <= 2
    rows: np.ndarray = hu[:, 0:y_end:fy].astype(np.int32 if exact else np.float64)
    for i in range(1, fy):
        rows += hu[:, i:y_end:fy]
    sums: np.ndarray = rows[:, :, 0:x_end:fx].copy()
    for j in range(1, fx):
        sums += rows[:, :, j:x_end:fx]
    return np.asarray(sums < AIR_LIKE_BELOW_HU * fy * fx)


def lung_components(air: np.ndarray, voxel_ml: float) -> np.ndarray:
    """The one or two largest air components that do not reach the in-plane border.

    Air reaching the in-plane border is outside the body (or padding beyond the field of view).
    The z faces do not count: the trachea leaves the top of every chest scan.
    """
    labels, count = ndimage.label(air)
    if count == 0:
        return np.zeros_like(air)
    faces = (labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1])
    border = np.unique(np.concatenate([f.ravel() for f in faces]))
    sizes = np.bincount(labels[air], minlength=count + 1)  # air voxels only: label 0 counts 0
    sizes[border] = 0
    ranked = np.argsort(sizes)[::-1][:2]
    keep = [int(ranked[0])] if sizes[ranked[0]] * voxel_ml >= MIN_LUNG_ML else []
    if keep and len(ranked) > 1 and sizes[ranked[1]] >= SECOND_LUNG_MIN_FRACTION * sizes[keep[0]]:
        keep.append(int(ranked[1]))
    lookup = np.zeros(count + 1, dtype=bool)
    lookup[keep] = True
    return np.asarray(lookup[labels])


def fill_holes_slicewise(mask: np.ndarray) -> np.ndarray:
    """Fill, in each slice, background regions that do not reach the slice border."""
    labels, count = ndimage.label(~mask, structure=IN_PLANE_CROSS)
    faces = (labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1])
    outside = np.zeros(count + 1, dtype=bool)
    outside[np.unique(np.concatenate([f.ravel() for f in faces]))] = True
    outside[0] = True  # label 0 is the mask itself
    return np.asarray(mask | ~outside[labels])


def close_and_fill(mask: np.ndarray, radius_px: int, threads: int = 1) -> np.ndarray:
    """Slice-wise closing (cross, ``radius_px`` iterations) then hole filling; same shape.

    Every step is in-plane, so z ranges are independent: ``threads`` of them run at once.
    """
    if threads > 1:
        return along_z(lambda z: close_and_fill(mask[z], radius_px), len(mask), threads)
    pad = radius_px + 1
    padded = np.pad(mask, ((0, 0), (pad, pad), (pad, pad)))
    if radius_px > 0:
        padded = ndimage.binary_closing(padded, structure=_CROSS, iterations=radius_px)
    return fill_holes_slicewise(padded)[:, pad:-pad, pad:-pad]


def open_in_plane(mask: np.ndarray, radius_mm: float, pixel_mm: float) -> np.ndarray:
    """Slice-wise opening with an octagon approximating a disk of ``radius_mm``.

    The octagon is a square (half-side ``a``) plus a diamond (radius ``b``) with ``a + b`` the
    radius in pixels and ``b = a * sqrt(2)``, which makes it regular; both parts are fast in
    scipy (separable min/max filters and iterated cross erosions).
    """
    radius_px = radius_mm / pixel_mm
    a = round(radius_px / (1 + math.sqrt(2)))
    b = round(radius_px - a)
    out = mask
    if a:
        out = ndimage.minimum_filter(out, size=(1, 2 * a + 1, 2 * a + 1), mode="constant", cval=0)
    if b:
        out = ndimage.binary_erosion(out, structure=_CROSS, iterations=b)
        out = ndimage.binary_dilation(out, structure=_CROSS, iterations=b)
    if a:
        out = ndimage.maximum_filter(out, size=(1, 2 * a + 1, 2 * a + 1), mode="constant", cval=0)
    return np.asarray(out, dtype=bool)


def lung_mask_in_box(
    hu: np.ndarray, spacing_mm: tuple[float, float, float], threads: int = 1
) -> tuple[np.ndarray, Box] | None:
    """Lung mask cropped to its bounding box, and that box (in ``hu`` coordinates).

    ``threads``: z ranges of the full-resolution steps computed at once (same result).
    """
    dz, dy, dx = spacing_mm
    fy, fx = block_factors(dy, dx)
    air = along_z(lambda z: coarse_air(hu[z], fy, fx), len(hu), threads)
    coarse = lung_components(air, dz * dy * fy * dx * fx / 1000.0)
    box = bounding_box(coarse)
    if box is None:
        return None
    closed = close_and_fill(coarse[box], round(CLOSING_RADIUS_MM / min(dy * fy, dx * fx)), threads)
    interior = ndimage.binary_erosion(closed, structure=_CROSS, border_value=0)
    full_box: Box = (
        box[0],
        slice(box[1].start * fy, box[1].stop * fy),
        slice(box[2].start * fx, box[2].stop * fx),
    )
    inside = hu[full_box]

    def full_resolution(z: slice) -> np.ndarray:
        return np.asarray(
            _upsample(interior[z], fy, fx)
            | (_upsample(closed[z], fy, fx) & (inside[z] < AIR_LIKE_BELOW_HU))
        )

    mask = along_z(full_resolution, len(interior), threads)
    return mask, full_box


def _upsample(mask: np.ndarray, fy: int, fx: int) -> np.ndarray:
    return np.repeat(np.repeat(mask, fy, axis=1), fx, axis=2)


def lung_mask(hu: np.ndarray, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """Boolean lung mask of ``hu`` (same shape); see ``inference.biomarkers.Biomarkers``."""
    mask = np.zeros(hu.shape, dtype=bool)
    found = lung_mask_in_box(hu, spacing_mm)
    if found is not None:
        mask[found[1]] = found[0]
    return mask
