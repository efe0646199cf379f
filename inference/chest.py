"""Is there a chest in this volume? A CT without lungs is refused instead of reading "0 mL".

A head, neck, abdomen or limb CT (or a chest CT whose lungs lie outside the field of view) has
no air-filled region of lung size inside the body: quantifying it would report 0 mL of lung and
0 % lesion, a number that looks like a healthy result. :func:`check_chest` refuses such a volume
with ``no_lung_found`` before it is quantified.

The test is the lung mask's first step (:mod:`inference.lungmask`: air-like blocks that do not
reach the in-plane border, the one or two largest components) on a coarse grid of about
``GRID_MM`` blocks, so that it costs a small fraction of the quantification: the volume is
refused when those components hold less than ``MIN_LUNG_ML``. Adult lungs hold litres of air,
a small child's a few hundred mL; sinuses, mastoids and most bowel gas stay far below the bound.
"""

from __future__ import annotations

import logging

import numpy as np

from inference.exceptions import SeriesRejected, SeriesRejectionReason
from inference.lungmask import coarse_air, lung_components

__all__ = ["GRID_MM", "MIN_LUNG_ML", "check_chest", "lung_air_ml"]

logger = logging.getLogger(__name__)

#: Less air-filled lung than this inside the body: not a chest CT (or no lung in the field).
MIN_LUNG_ML = 200.0
#: In-plane block size of the coarse grid the test runs on.
GRID_MM = 4.0


def lung_air_ml(hu: np.ndarray, spacing_mm: tuple[float, float, float]) -> float:
    """Air-like lung inside the body of a (z, y, x) HU volume, in mL, on the coarse grid."""
    dz, dy, dx = spacing_mm
    fy = max(1, min(int(GRID_MM / dy), hu.shape[1] // 8))
    fx = max(1, min(int(GRID_MM / dx), hu.shape[2] // 8))
    voxel_ml = dz * dy * fy * dx * fx / 1000.0
    lungs = lung_components(coarse_air(hu, fy, fx), voxel_ml)
    return float(np.count_nonzero(lungs)) * voxel_ml


def check_chest(hu: np.ndarray, spacing_mm: tuple[float, float, float]) -> float:
    """The coarse lung air volume (mL); ``SeriesRejected`` (NO_LUNG_FOUND) below the bound."""
    found_ml = lung_air_ml(hu, spacing_mm)
    if found_ml < MIN_LUNG_ML:
        raise SeriesRejected(
            SeriesRejectionReason.NO_LUNG_FOUND,
            f"{found_ml:.0f} mL of air-filled lung inside the body, at least {MIN_LUNG_ML:.0f} "
            "needed: not a chest CT, or the lungs are outside the field of view",
        )
    logger.debug("chest check: %.0f mL of lung air", found_ml)
    return found_ml
