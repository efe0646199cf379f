"""Regional lesion biomarkers from lung and lesion masks: zones, severity score, distribution.

Definitions (masks are (z, y, x), z ascending feet to head, x = image columns; in the standard
axial DICOM orientation column index grows towards the patient's left):

- **Lungs**: the lung mask's voxels left of the mid-column of the lung mask's bounding box are
  the right lung, the others the left lung (a fixed split, good enough for zone statistics; it
  is not a fissure-aware lobe segmentation).
- **Zones** (``right_upper_zone_percent`` ... ``left_lower_zone_percent``, UCUM ``%``): each
  lung is cut into thirds of its own craniocaudal extent (upper = head-most third); the value
  is the lesion volume in the zone as % of the zone's lung volume.
- **CT severity score** (``ct_severity_score``, 0-30, unitless): each of the 6 zones scores
  0 (< 0.5 %, the noise floor of the masks: a normal lung shows specks), 1 (0.5-5 %),
  2 (5-25 %), 3 (25-50 %), 4 (50-75 %), 5 (>= 75 %), as in the 5-lobe Pan/Chung score but on
  6 zones (so the maximum is 30, not 25).
- **Bilateral** (``bilateral``, 1.0 / 0.0): at least one zone of each lung scores 1 or more.
- **Peripheral** (``peripheral_lesion_percent``): % of the lesion volume within
  ``PERIPHERAL_MM`` (in-plane) of the lung mask border; ``peripheral_predominant`` is 1.0 when
  that share exceeds the share of lung volume in the same rim by more than 10 points.
- **Lesion count** (``lesion_count``): 3-D connected lesion components (26-connectivity) of at
  least ``MIN_COMPONENT_ML`` (0.5 mL, about a 1 cm nodule).
- **Heterogeneity** (``lesion_hu_std``, UCUM ``[hnsf'U]``): standard deviation of HU inside the
  lesion mask (0 without lesion); mixed ground glass and consolidation score high.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import partial

import numpy as np
from scipy import ndimage

from inference.slabs import run_all, z_slabs

#: Zone scores: upper bounds (exclusive, %) of scores 1..4; above the last is 5.
SCORE_BOUNDS_PERCENT = (5.0, 25.0, 50.0, 75.0)
MIN_ZONE_PERCENT = 0.5
PERIPHERAL_MM = 15.0
MIN_COMPONENT_ML = 0.5
ZONES = tuple(
    f"{side}_{level}" for side in ("right", "left") for level in ("upper", "middle", "lower")
)


@dataclass(frozen=True)
class RegionalBiomarkers:
    """Zone involvement, severity score and lesion distribution (see the module docstring)."""

    right_upper_zone_percent: float = 0.0
    right_middle_zone_percent: float = 0.0
    right_lower_zone_percent: float = 0.0
    left_upper_zone_percent: float = 0.0
    left_middle_zone_percent: float = 0.0
    left_lower_zone_percent: float = 0.0
    ct_severity_score: float = 0.0
    bilateral: float = 0.0
    peripheral_lesion_percent: float = 0.0
    peripheral_predominant: float = 0.0
    lesion_count: float = 0.0
    lesion_hu_std: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """Field name -> value, JSON-ready."""
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Names in declaration order (also the study models' extra Triton outputs)."""
        return tuple(f.name for f in fields(cls))


UNITS = {name: "%" for name in RegionalBiomarkers.names() if name.endswith("percent")} | {
    "ct_severity_score": "{score}",
    "bilateral": "{boolean}",
    "peripheral_predominant": "{boolean}",
    "lesion_count": "{count}",
    "lesion_hu_std": "[hnsf'U]",
}


def zone_score(percent: float) -> int:
    """0-5 severity score of one zone from its % involvement."""
    if percent < MIN_ZONE_PERCENT:
        return 0
    return 1 + sum(percent >= b for b in SCORE_BOUNDS_PERCENT)


def _zone_percents(lung: np.ndarray, lesion: np.ndarray) -> dict[str, float]:
    cols = np.flatnonzero(lung.any(axis=(0, 1)))
    mid = (int(cols[0]) + int(cols[-1]) + 1) // 2
    out: dict[str, float] = {}
    for side, x_slice in (("right", slice(0, mid)), ("left", slice(mid, None))):
        side_lung = lung[:, :, x_slice]
        side_lesion = lesion[:, :, x_slice]
        per_z_lung = side_lung.sum(axis=(1, 2))
        per_z_lesion = (side_lesion & side_lung).sum(axis=(1, 2))
        zs = np.flatnonzero(per_z_lung)
        bounds = (
            np.linspace(zs[0], zs[-1] + 1, 4).round().astype(int) if zs.size else np.zeros(4, int)
        )
        # z ascends feet -> head: the last third is the upper zone
        for level, (lo, hi) in zip(
            ("lower", "middle", "upper"), zip(bounds[:-1], bounds[1:], strict=True), strict=True
        ):
            total = int(per_z_lung[lo:hi].sum())
            lesion_voxels = int(per_z_lesion[lo:hi].sum())
            out[f"{side}_{level}"] = 100.0 * lesion_voxels / total if total else 0.0
    return out


def regional_biomarkers(
    hu: np.ndarray,
    spacing_mm: tuple[float, float, float],
    lung: np.ndarray,
    lesion: np.ndarray,
    threads: int = 1,
) -> RegionalBiomarkers:
    """Regional biomarkers of boolean (z, y, x) ``lung`` and ``lesion`` masks of ``hu``.

    ``threads``: the peripheral rim's z ranges and the 3-D lesion labelling computed at once.
    """
    lesion = lesion & lung
    if not lung.any():
        return RegionalBiomarkers()
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    zones = _zone_percents(lung, lesion)
    lesion_voxels = int(lesion.sum())
    peripheral_lesion = peripheral_lung = 0.0
    count = 0
    hu_std = 0.0
    if lesion_voxels:

        def rim_counts(z: slice) -> tuple[int, int]:
            rim = _peripheral_rim(lung[z], spacing_mm)
            return int((lesion[z] & rim).sum()), int(rim.sum())

        def components() -> tuple[int, int]:
            labels, n = ndimage.label(lesion, structure=np.ones((3, 3, 3), dtype=bool))
            # counted over the lesion's voxels only (the background is most of the box)
            sizes = np.bincount(labels[lesion], minlength=n + 1)[1:]
            return int((sizes * voxel_ml >= MIN_COMPONENT_ML).sum()), n

        # the labelling and the rim's z ranges at once; labelling first, it is the longest job
        jobs = [components] + [partial(rim_counts, z) for z in z_slabs(len(lung), threads)]
        (count, _), *rims = run_all(jobs, threads)
        peripheral_lesion = 100.0 * sum(r[0] for r in rims) / lesion_voxels
        peripheral_lung = 100.0 * sum(r[1] for r in rims) / int(lung.sum())
        hu_std = float(np.std(hu[lesion].astype(np.float64)))
    return RegionalBiomarkers(
        right_upper_zone_percent=zones["right_upper"],
        right_middle_zone_percent=zones["right_middle"],
        right_lower_zone_percent=zones["right_lower"],
        left_upper_zone_percent=zones["left_upper"],
        left_middle_zone_percent=zones["left_middle"],
        left_lower_zone_percent=zones["left_lower"],
        ct_severity_score=float(sum(zone_score(v) for v in zones.values())),
        bilateral=float(
            any(zone_score(zones[f"right_{z}"]) for z in ("upper", "middle", "lower"))
            and any(zone_score(zones[f"left_{z}"]) for z in ("upper", "middle", "lower"))
        ),
        peripheral_lesion_percent=peripheral_lesion,
        peripheral_predominant=float(peripheral_lesion > peripheral_lung + 10.0),
        lesion_count=float(count),
        lesion_hu_std=hu_std,
    )


def _peripheral_rim(lung: np.ndarray, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """Lung voxels within ``PERIPHERAL_MM`` in-plane of the lung border (slice by slice).

    Distances are computed on every second row and column (a quarter of the work; the rim's
    edge moves by at most one voxel) and repeated back to full size.
    """
    rim = np.zeros_like(lung)
    coarse = lung[:, ::2, ::2]
    sampling = (2 * spacing_mm[1], 2 * spacing_mm[2])
    h, w = lung.shape[1], lung.shape[2]
    for z in np.flatnonzero(coarse.any(axis=(1, 2))):
        distance = ndimage.distance_transform_edt(coarse[z], sampling=sampling)
        near = np.repeat(np.repeat(distance <= PERIPHERAL_MM, 2, axis=0), 2, axis=1)[:h, :w]
        rim[z] = lung[z] & near
    return rim
