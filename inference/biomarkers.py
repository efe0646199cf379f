"""Imaging biomarkers of viral pneumonia from a CT volume in Hounsfield units (threshold method).

``quantify_threshold`` is a classical, non-learned quantifier: a lung mask from an HU threshold
and slice-wise morphology (:mod:`inference.lungmask`), then the lung voxels are binned by
density. It is fast, transparent and deterministic; its known biases are listed in
``inference/model_repository/lesion_threshold/MODEL_CARD.md``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields

import numpy as np

from inference.exceptions import InvalidVolume
from inference.lungmask import Box, lung_mask_in_box, open_in_plane

logger = logging.getLogger(__name__)

#: HU ranges: lower bound inclusive, upper bound exclusive, except consolidation's +100.
WELL_AERATED_HU = (-950, -700)
GGO_HU = (-700, -300)  # ground-glass opacity
CONSOLIDATION_HU = (-300, 100)  # upper bound inclusive
#: Dense lung structures a disk of this radius does not fit in (vessels, fissures, the
#: partial-volume rim at the pleura) are not lesions: the lesion mask is opened with it.
VESSEL_RADIUS_MM = 2.5
MAX_SPACING_MM = 100.0
_HU_OFFSET = 32768  # int16 HU -> histogram bin


@dataclass(frozen=True)
class Biomarkers:
    """Lung and lesion burden of one CT volume (percentages are of the lung volume).

    - ``lung_volume_ml`` (UCUM ``mL``): volume of the lung mask. The mask is the air-like
      (< -320 HU) region inside the body: air components reaching the in-plane image border
      (outside air, padding) are dropped, the largest one or two remaining components are kept,
      then each slice is closed (6 mm) and hole-filled so that vessels, airway walls and lesions
      inside the lungs count. The trachea and main bronchi are included.
    - ``lesion_volume_ml`` (mL): lung voxels from -700 HU to +100 HU (ground glass plus
      consolidation) that remain after a slice-wise opening with a 2.5 mm disk, which drops dense
      structures narrower than about 5 mm in-plane (vessels, fissures, the pleural rim). Larger
      vessels near the hilum remain, so a normal lung still shows a few percent.
    - ``lesion_percent`` (UCUM ``%``): ``lesion_volume_ml`` as % of ``lung_volume_ml``.
    - ``ggo_percent``: lesion voxels in [-700, -300) HU (ground-glass opacity), % of lung.
    - ``consolidation_percent``: lesion voxels in [-300, +100] HU, % of lung;
      ``ggo_percent + consolidation_percent == lesion_percent``.
    - ``well_aerated_percent``: lung voxels in [-950, -700) HU, % of lung (no opening).

    All values are 0 when no lung is found.
    """

    lung_volume_ml: float
    lesion_volume_ml: float
    lesion_percent: float
    ggo_percent: float
    consolidation_percent: float
    well_aerated_percent: float

    def as_dict(self) -> dict[str, float]:
        """Field name -> value, JSON-ready."""
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The biomarker names in declaration order (the order of Triton's outputs too)."""
        return tuple(f.name for f in fields(cls))


NO_LUNG = Biomarkers(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def check_volume(
    hu: np.ndarray, spacing_mm: tuple[float, float, float]
) -> tuple[float, float, float]:
    """Validate a (z, y, x) HU array and its spacing; return the spacing as three floats."""
    if not isinstance(hu, np.ndarray) or hu.ndim != 3 or min(hu.shape) < 3:
        shape = getattr(hu, "shape", None)
        raise InvalidVolume(f"expected a 3-D array with at least 3 voxels per axis, got {shape}")
    if not (np.issubdtype(hu.dtype, np.integer) or np.issubdtype(hu.dtype, np.floating)):
        raise InvalidVolume(f"expected integer or float HU, got dtype {hu.dtype}")
    try:
        spacing = [float(s) for s in np.asarray(spacing_mm, dtype=np.float64).ravel()]
    except (TypeError, ValueError) as e:
        raise InvalidVolume(f"spacing_mm is not numeric: {spacing_mm!r}") from e
    if len(spacing) != 3 or not all(np.isfinite(s) and 0 < s <= MAX_SPACING_MM for s in spacing):
        raise InvalidVolume(f"spacing_mm must be 3 positive finite millimetres, got {spacing_mm}")
    return spacing[0], spacing[1], spacing[2]


def _cumulative_histogram(values: np.ndarray) -> np.ndarray:
    """``c[h + OFFSET]`` = number of values below ``h`` HU."""
    if values.dtype != np.int16:
        values = np.clip(np.rint(values), -_HU_OFFSET, _HU_OFFSET - 1)
    counts = np.bincount(values.astype(np.int64) + _HU_OFFSET, minlength=2 * _HU_OFFSET)
    return np.concatenate([[0], np.cumsum(counts)])


def _count(cumulative: np.ndarray, low_hu: int, high_hu_exclusive: int) -> int:
    return int(cumulative[high_hu_exclusive + _HU_OFFSET] - cumulative[low_hu + _HU_OFFSET])


def _percent(count: int, total: int) -> float:
    return 100.0 * count / total if total else 0.0


def _masks_in_box(
    hu: np.ndarray, spacing_mm: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray, Box] | None:
    """Lung and lesion masks inside the lungs' bounding box, and that box."""
    found = lung_mask_in_box(hu, spacing_mm)
    if found is None:
        return None
    lung_box, box = found
    hu_box = hu[box]
    dense = lung_box & (hu_box >= GGO_HU[0]) & (hu_box <= CONSOLIDATION_HU[1])
    lesion_box = open_in_plane(dense, VESSEL_RADIUS_MM, min(spacing_mm[1], spacing_mm[2]))
    return lung_box, lesion_box, box


def threshold_masks(
    hu: np.ndarray, spacing_mm: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Full-size boolean (lung, lesion) masks behind :func:`quantify_threshold`.

    For overlays, segmentation objects and per-slice statistics; the quantifier itself only
    keeps the lungs' bounding box.
    """
    spacing = check_volume(hu, spacing_mm)
    lung = np.zeros(hu.shape, dtype=bool)
    lesion = np.zeros(hu.shape, dtype=bool)
    found = _masks_in_box(hu, spacing)
    if found is not None:
        lung[found[2]], lesion[found[2]] = found[0], found[1]
    return lung, lesion


def quantify_threshold(hu: np.ndarray, spacing_mm: tuple[float, float, float]) -> Biomarkers:
    """Quantify lung and lesion burden of ``hu`` (z, y, x) with HU thresholds.

    ``spacing_mm`` is the (z, y, x) voxel spacing in millimetres. The definitions are those of
    :class:`Biomarkers`. Raises ``InvalidVolume`` for an array that is not 3-D, has fewer than 3
    voxels along an axis or is not numeric, or for a spacing that is not 3 positive numbers.
    """
    spacing = check_volume(hu, spacing_mm)
    found = _masks_in_box(hu, spacing)
    if found is None:
        logger.info("no lung found in a %s volume", hu.shape)
        return NO_LUNG
    lung_box, lesion_box, box = found
    hu_box = hu[box]
    lung = _cumulative_histogram(hu_box[lung_box])
    lesion = _cumulative_histogram(hu_box[lesion_box])
    total = int(lung[-1])
    ggo = _count(lesion, *GGO_HU)
    consolidation = _count(lesion, CONSOLIDATION_HU[0], CONSOLIDATION_HU[1] + 1)
    voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    result = Biomarkers(
        lung_volume_ml=total * voxel_ml,
        lesion_volume_ml=(ggo + consolidation) * voxel_ml,
        lesion_percent=_percent(ggo + consolidation, total),
        ggo_percent=_percent(ggo, total),
        consolidation_percent=_percent(consolidation, total),
        well_aerated_percent=_percent(_count(lung, *WELL_AERATED_HU), total),
    )
    logger.debug("quantified %s at %s mm: %s", hu.shape, spacing, result)
    return result
