"""The inside of the phantom's lungs, one slice at a time: parenchyma, vessels, lesions.

What makes the lesions look like CT rather than flat blobs (issue 12, item 3):

- **Ground glass** is a density *field*, not a label: each lesion's signed distance to its
  lobulated border (a :class:`~triage.cohort.texture.WaveField` perturbs the ellipsoid) goes
  through a logistic edge whose width is the lesion's own blur plus the voxel's partial volume,
  so the lung fades into the lesion over a few mm. A lobule-scale involvement field spares
  some lobules inside the outline (a mosaic, as large real lesions are, not one flat blob).
  Inside, the density is patchy (lesion texture) with thin septal lines (crazy paving), and the
  vessels run through it unchanged.
- **Consolidation** fills the most involved lobules of a lesion's denser core, with a sharper
  edge; the bronchi that cross it stay filled with air (air bronchograms), the vessels vanish
  into it (same density).
- **Parenchyma** carries small-vessel texture, so that normal lung has the SD of real lung.

The ground truth stays a label map: a voxel is ground glass where its lesion amount (edge
profile x involvement) is >= 0.5, consolidation where the core's amount is, i.e. inside the
50 % partial-volume contour, as a reader would draw it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

from triage.cohort.anatomy import BASE_HU, Anatomy, Blob, Segment, TissueLabel
from triage.cohort.texture import Textures, involvement, parenchyma_texture_hu, reticulation_hu

Float32 = NDArray[np.float32]

#: Intrinsic blur (SD, mm) of lesion borders before the voxel's own partial volume: ground
#: glass fades into the lung over several mm, consolidation is sharper.
GGO_EDGE_MM, CONSOLIDATION_EDGE_MM = 2.5, 1.0
#: Lobulation of lesion borders: amplitude as a fraction of the lesion radius, capped (mm).
MARGIN_FRACTION, MARGIN_MAX_MM = 0.25, 5.0
LESION_TEXTURE_HU = 45.0  # SD of the patchy density inside ground glass
CORE_TEXTURE_HU = 20.0  # SD inside consolidation
AIR_BRONCHOGRAM_HU = -900.0
#: Consolidation fills the lobules whose involvement field is above 0, over about this much of
#: the field's unit SD: a patchy core inside the ground glass rather than a solid ellipsoid.
CONSOLIDATING_LOBULE_SCALE = 0.12
GRAVITY_HU = 35.0  # posterior (dependent) lung is denser by up to this much
_LOGISTIC_SD = np.pi / np.sqrt(3.0)  # SD of the logistic distribution of scale 1


@dataclass(frozen=True)
class SliceGrid:
    """The part of one slice that holds lung: pixel centres (mm) and the slice's height."""

    xs: Float32  # columns
    ys: Float32  # rows
    h: float
    spacing_mm: tuple[float, float, float]  # (z, y, x) of the whole volume

    def edge_scale(self, intrinsic_sd_mm: float) -> float:
        """Logistic scale (mm) of a border: its own blur plus the voxel's partial volume."""
        voxel_var = sum(d * d for d in self.spacing_mm) / 12.0
        return float(np.sqrt(intrinsic_sd_mm**2 + voxel_var) / _LOGISTIC_SD)


def _box(axis: Float32, lo: float, hi: float) -> slice:
    return slice(int(np.searchsorted(axis, lo, side="left")), int(np.searchsorted(axis, hi)))


def tube_coverage(segments: tuple[Segment, ...], grid: SliceGrid) -> Float32:
    """Fraction of each pixel covered by the tubes (anti-aliased over one pixel), 0..1."""
    xs, ys, h = grid.xs, grid.ys, grid.h
    pixel = min(grid.spacing_mm[1:])
    out = np.zeros((ys.size, xs.size), dtype=np.float32)
    for seg in segments:
        p0, p1 = np.asarray(seg.p0), np.asarray(seg.p1)
        v = p1 - p0
        r = max(seg.r0_mm, seg.r1_mm) + pixel
        if v[2] != 0:
            t_a, t_b = sorted(((h - r - p0[2]) / v[2], (h + r - p0[2]) / v[2]))
            t_a, t_b = max(t_a, 0.0), min(t_b, 1.0)
            if t_a > t_b:
                continue
        elif abs(h - p0[2]) > r:
            continue
        else:
            t_a, t_b = 0.0, 1.0
        ends = np.stack([p0 + t_a * v, p0 + t_b * v])
        cols = _box(xs, float(ends[:, 0].min()) - r, float(ends[:, 0].max()) + r)
        rows = _box(ys, float(ends[:, 1].min()) - r, float(ends[:, 1].max()) + r)
        if cols.start >= cols.stop or rows.start >= rows.stop:
            continue
        px, py = np.meshgrid(xs[cols], ys[rows])
        d = np.stack([px - p0[0], py - p0[1], np.full_like(px, h - p0[2])])
        t = np.clip(np.tensordot(v, d, axes=1) / float(v @ v), 0.0, 1.0)
        dist = np.sqrt(((d - v[:, None, None] * t) ** 2).sum(axis=0))
        radius = seg.r0_mm + (seg.r1_mm - seg.r0_mm) * t
        cover = np.clip(0.5 + (radius - dist) / pixel, 0.0, 1.0).astype(np.float32)
        np.maximum(out[rows, cols], cover, out=out[rows, cols])
    return out


@dataclass
class LesionFields:
    """Signed distances (mm, > 0 inside) to the ground-glass and consolidation borders."""

    ggo_mm: Float32
    core_mm: Float32
    ggo_hu: Float32  # density level of the lesion that owns each pixel
    core_hu: Float32

    @property
    def any(self) -> bool:
        """Whether any lesion reaches this slice."""
        return bool(np.isfinite(self.ggo_mm).any())


def _reach_mm(blob: Blob, grid: SliceGrid) -> float:
    """How far outside its ellipsoid a blob still changes the image."""
    margin = min(MARGIN_FRACTION * float(np.mean(blob.radii_mm)), MARGIN_MAX_MM)
    return margin + 6.0 * grid.edge_scale(GGO_EDGE_MM)


def lesion_fields(lesions: tuple[Blob, ...], margin: Float32, grid: SliceGrid) -> LesionFields:
    """Union of the lesions on this slice (the nearest border wins); ``margin`` in [-1, 1]."""
    shape = (grid.ys.size, grid.xs.size)
    fields = LesionFields(
        np.full(shape, -np.inf, np.float32),
        np.full(shape, -np.inf, np.float32),
        np.zeros(shape, np.float32),
        np.zeros(shape, np.float32),
    )
    for blob in lesions:
        reach = _reach_mm(blob, grid)
        if abs(grid.h - blob.center[2]) >= blob.radii_mm[2] + reach:
            continue
        half = blob.max_radius_mm + reach
        cols = _box(grid.xs, blob.center[0] - half, blob.center[0] + half)
        rows = _box(grid.ys, blob.center[1] - half, blob.center[1] + half)
        if cols.start >= cols.stop or rows.start >= rows.stop:
            continue
        px, py = np.meshgrid(grid.xs[cols], grid.ys[rows])
        radius = np.sqrt(blob.q(px, py, grid.h))
        size = float(np.mean(blob.radii_mm))
        lobes = min(MARGIN_FRACTION * size, MARGIN_MAX_MM) * margin[rows, cols]
        ggo = ((1.0 - radius) * size + lobes).astype(np.float32)
        mine = ggo > fields.ggo_mm[rows, cols]
        fields.ggo_mm[rows, cols][mine] = ggo[mine]
        fields.ggo_hu[rows, cols][mine] = blob.ggo_hu
        if blob.core_fraction > 0:
            core = ((blob.core_fraction - radius) * size + 0.5 * lobes).astype(np.float32)
            mine = core > fields.core_mm[rows, cols]
            fields.core_mm[rows, cols][mine] = core[mine]
            fields.core_hu[rows, cols][mine] = blob.core_hu
    return fields


def render_lung(
    anatomy: Anatomy,
    textures: Textures,
    grid: SliceGrid,
    lung: NDArray[np.bool_],
    labels: NDArray[np.uint8],
    hu: NDArray[np.float32],
) -> None:
    """Write HU and labels of the lung pixels of ``grid`` (views of the slice, same shape)."""
    xs, ys, h = grid.xs, grid.ys, grid.h
    y = np.broadcast_to(ys[:, None], lung.shape)
    value = anatomy.lung_hu + GRAVITY_HU * ((y - anatomy.lung_cy_mm) / anatomy.lung_ay_mm)
    value = value + parenchyma_texture_hu(textures.parenchyma.on_grid(xs, ys, h))
    vessel = tube_coverage(anatomy.vessels, grid)
    fields = lesion_fields(anatomy.lesions, textures.margin.on_grid(xs, ys, h), grid)
    core = np.zeros(lung.shape, dtype=bool)
    amount = np.zeros(lung.shape, dtype=np.float32)
    if fields.any:
        lobules = textures.involvement.on_grid(xs, ys, h)
        patchy = textures.lesion.on_grid(xs, ys, h)
        ggo_hu = fields.ggo_hu + LESION_TEXTURE_HU * patchy
        ggo_hu += reticulation_hu(textures.reticulation.on_grid(xs, ys, h))
        amount = expit(fields.ggo_mm / grid.edge_scale(GGO_EDGE_MM)) * involvement(lobules)
        value = value * (1 - amount) + ggo_hu * amount
    value = value * (1 - vessel) + BASE_HU[TissueLabel.VESSEL] * vessel
    if fields.any and np.isfinite(fields.core_mm).any():
        c = expit(fields.core_mm / grid.edge_scale(CONSOLIDATION_EDGE_MM))
        c *= expit(lobules / CONSOLIDATING_LOBULE_SCALE)
        value = value * (1 - c) + (fields.core_hu + CORE_TEXTURE_HU * patchy) * c
        air = tube_coverage(anatomy.bronchi, grid) * c
        value = value * (1 - air) + AIR_BRONCHOGRAM_HU * air
        core = lung & (c >= 0.5)
    outline = lung & (amount >= 0.5)
    hu[lung] = value[lung]
    labels[lung] = TissueLabel.LUNG
    labels[lung & (vessel >= 0.5) & ~outline & ~core] = TissueLabel.VESSEL
    labels[outline & ~core] = TissueLabel.GGO
    labels[core] = TissueLabel.CONSOLIDATION
