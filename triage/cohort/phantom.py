"""CT phantom of a chest with viral-pneumonia-like lesions, rendered slice by slice in HU.

Volume axes are ``(z, y, x)``: slice ``k`` lies at ``z = z0 + k * dz`` (ascending along the slice
normal, so index 0 is the most inferior slice), row ``r`` at ``y = y0 + r * dy`` (posterior is
+y), column ``c`` at ``x = x0 + c * dx`` (patient's left is +x), as in DICOM LPS with
ImageOrientationPatient ``[1, 0, 0, 0, 1, 0]``. The anatomy is fixed in millimetres, so lung and
lesion volumes barely change with the matrix; only the sampling does. Rendering one slice
needs only that slice's memory, which keeps 512 x 512 x 300 studies cheap.

The body, bones and airway are flat HU classes; the lungs (parenchyma texture, vessels,
ground glass with vessels through it, patchy consolidation with air bronchograms, partial
volume at every border) are drawn by :mod:`triage.cohort.lung_render`, and the scanner noise
and textures, matched to the real series in ``../shared/data``, come from
:mod:`triage.cohort.texture`. SYNTHETIC: it looks like CT to the learned lesion model (see
``tests/bench/test_bench_phantom_read.py``), it is not a patient.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from triage.cohort.anatomy import (
    BASE_HU,
    LESION_LABELS,
    LUNG_LABELS,
    Anatomy,
    TissueLabel,
    sample_anatomy,
    sample_bronchi,
    sample_lesions,
    sample_vessels,
)
from triage.cohort.lung_render import SliceGrid, render_lung
from triage.cohort.patients import Stream, patient_rng
from triage.cohort.texture import Textures, involvement, sample_textures, scanner_noise

HU_MIN, HU_MAX = -1024, 3071
_TRACHEA_R_MM = 9.0


@dataclass(frozen=True)
class PhantomGeometry:
    """Sampling grid of the phantom: ``slices`` x ``matrix`` x ``matrix`` voxels."""

    slices: int = 64
    matrix: int = 128
    fov_mm: float = 360.0
    scan_length_mm: float = 320.0

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel spacing (z, y, x) in mm."""
        d = self.fov_mm / self.matrix
        return self.scan_length_mm / self.slices, d, d

    @property
    def shape(self) -> tuple[int, int, int]:
        """Volume shape (z, y, x)."""
        return self.slices, self.matrix, self.matrix

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL."""
        dz, dy, dx = self.spacing_mm
        return dz * dy * dx / 1000.0

    @property
    def origin_mm(self) -> tuple[float, float, float]:
        """Centre (x, y, z) of voxel (0, 0, 0) in patient coordinates (DICOM LPS)."""
        dz, dy, dx = self.spacing_mm
        half = self.fov_mm / 2
        return -half + dx / 2, -half + dy / 2, -self.scan_length_mm + dz / 2

    def z_mm(self, k: int) -> float:
        """Patient z of slice ``k``."""
        return self.origin_mm[2] + k * self.spacing_mm[0]

    def height_mm(self, k: int) -> float:
        """Height of slice ``k`` above the bottom of the scan (the anatomy's frame)."""
        return (k + 0.5) * self.spacing_mm[0]

    def axes_mm(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """In-plane pixel centres: x per column and y per row."""
        x0, y0, _ = self.origin_mm
        _, dy, dx = self.spacing_mm
        i = np.arange(self.matrix, dtype=np.float32)
        return (x0 + i * dx).astype(np.float32), (y0 + i * dy).astype(np.float32)


@dataclass(frozen=True)
class PhantomSpec:
    """Everything needed to render one study, deterministically."""

    geometry: PhantomGeometry
    anatomy: Anatomy
    noise_seed: tuple[int, int]  # (cohort seed, patient index)
    textures: Textures


@dataclass(frozen=True)
class PhantomTruth:
    """Volumes measured on the rendered label map (the ground truth of the study)."""

    lung_volume_ml: float
    lesion_volume_ml: float
    ggo_volume_ml: float
    consolidation_volume_ml: float

    @property
    def lesion_percent(self) -> float:
        """Lesion volume as a percentage of lung volume."""
        return 100.0 * self.lesion_volume_ml / self.lung_volume_ml if self.lung_volume_ml else 0.0


def sample_phantom(
    seed: int,
    index: int,
    geometry: PhantomGeometry,
    lesion_fraction: float,
    consolidation_share: float,
    obese: bool,
) -> PhantomSpec:
    """Draw the phantom of patient ``index``: anatomy, vessel tree and lesions."""
    base = sample_anatomy(patient_rng(seed, index, Stream.ANATOMY), obese, geometry.scan_length_mm)
    vessels = sample_vessels(patient_rng(seed, index, Stream.VESSELS), base)
    # a sub-stream of the anatomy stream: the shapes drawn before textures existed are unchanged
    textures = sample_textures(np.random.default_rng([seed, index, int(Stream.ANATOMY), 1]))

    def involved(points: NDArray[np.float64]) -> NDArray[np.bool_]:
        field = textures.involvement.at(points[:, 0], points[:, 1], points[:, 2])
        return np.asarray(involvement(field) >= 0.5)

    lesions = sample_lesions(
        patient_rng(seed, index, Stream.LESIONS),
        base,
        lesion_fraction,
        consolidation_share,
        involved=involved,
    )
    anatomy = replace(base, vessels=vessels, bronchi=sample_bronchi(vessels), lesions=lesions)
    return PhantomSpec(geometry, anatomy, noise_seed=(seed, index), textures=textures)


def render_slice(spec: PhantomSpec, k: int) -> tuple[NDArray[np.int16], NDArray[np.uint8]]:
    """Render slice ``k``: HU (int16, clipped to the stored range) and tissue labels."""
    g, a = spec.geometry, spec.anatomy
    xs, ys = g.axes_mm()
    x, y = (a32.astype(np.float32) for a32 in np.meshgrid(xs, ys))  # (rows=y, cols=x)
    h = g.height_mm(k)
    labels = np.full(x.shape, TissueLabel.AIR, dtype=np.uint8)
    hu = np.full(x.shape, BASE_HU[TissueLabel.AIR], dtype=np.float32)

    body = (x / a.body_ax_mm) ** 2 + (y / a.body_ay_mm) ** 2 <= 1
    inner_r2 = np.asarray(a.inner_r2(x, y), dtype=np.float32)
    labels[body] = TissueLabel.FAT
    labels[inner_r2 <= 1] = TissueLabel.SOFT_TISSUE
    _bones(a, x, y, h, inner_r2, labels)
    if h > a.lung_base_h_mm + 0.62 * a.lung_height_mm:
        labels[x**2 + (y + 10.0) ** 2 <= _TRACHEA_R_MM**2] = TissueLabel.AIRWAY
    for label in (TissueLabel.FAT, TissueLabel.SOFT_TISSUE, TissueLabel.BONE, TissueLabel.AIRWAY):
        hu[labels == label] = BASE_HU[label]

    lung, _ = a.lung_mask(x, y, h)
    rows, cols = np.flatnonzero(lung.any(axis=1)), np.flatnonzero(lung.any(axis=0))
    if rows.size:
        box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        grid = SliceGrid(xs[box[1]], ys[box[0]], h, g.spacing_mm)
        render_lung(a, spec.textures, grid, lung[box], labels[box], hu[box])

    rng = np.random.default_rng([*spec.noise_seed, int(Stream.NOISE), k])
    hu += scanner_noise(rng, (g.matrix, g.matrix), g.spacing_mm)
    return np.clip(np.rint(hu), HU_MIN, HU_MAX).astype(np.int16), labels


def _bones(
    a: Anatomy,
    x: NDArray[np.float32],
    y: NDArray[np.float32],
    h: float,
    inner_r2: NDArray[np.float32],
    labels: NDArray[np.uint8],
) -> None:
    spine_cy = a.spine_cy_mm
    labels[x**2 + (y - spine_cy) ** 2 <= a.spine_r_mm**2] = TissueLabel.BONE
    process = (x / 6.0) ** 2 + ((y - spine_cy - a.spine_r_mm - 10.0) / 11.0) ** 2 <= 1
    labels[process] = TissueLabel.BONE
    sternum = (x / 16.0) ** 2 + ((y + a.inner_axes_mm[1] - 12.0) / 7.0) ** 2 <= 1
    labels[sternum] = TissueLabel.BONE
    # Ribs: a ring just inside the fat, present in oblique bands (posterior ends higher).
    band = np.mod(h + a.rib_phase_mm + 0.12 * y, a.rib_period_mm) < 9.0
    ring = (inner_r2 > 0.95**2) & (inner_r2 <= 1.0)
    cartilage = (y < -0.6 * a.inner_axes_mm[1]) & (np.abs(x) < 40.0)
    labels[ring & band & ~cartilage] = TissueLabel.BONE


def iter_slices(spec: PhantomSpec) -> Iterator[tuple[int, NDArray[np.int16], NDArray[np.uint8]]]:
    """Yield ``(k, hu, labels)`` for every slice, inferior to superior."""
    for k in range(spec.geometry.slices):
        hu, labels = render_slice(spec, k)
        yield k, hu, labels


class TruthCounter:
    """Accumulates voxel counts per tissue class while slices stream by."""

    def __init__(self, geometry: PhantomGeometry) -> None:
        self.geometry = geometry
        self.counts = np.zeros(len(TissueLabel), dtype=np.int64)

    def add(self, labels: NDArray[np.uint8]) -> None:
        """Count one slice's labels."""
        self.counts += np.bincount(labels.ravel(), minlength=len(TissueLabel))

    def truth(self) -> PhantomTruth:
        """Return the volumes counted so far."""
        ml = self.geometry.voxel_volume_ml
        lung = sum(int(self.counts[label]) for label in LUNG_LABELS)
        lesion = sum(int(self.counts[label]) for label in LESION_LABELS)
        return PhantomTruth(
            lung_volume_ml=lung * ml,
            lesion_volume_ml=lesion * ml,
            ggo_volume_ml=int(self.counts[TissueLabel.GGO]) * ml,
            consolidation_volume_ml=int(self.counts[TissueLabel.CONSOLIDATION]) * ml,
        )


def render_volume(
    spec: PhantomSpec,
) -> tuple[NDArray[np.int16], NDArray[np.uint8], PhantomTruth]:
    """Render the whole volume in memory (small phantoms, tests): HU, labels and truth."""
    hu = np.empty(spec.geometry.shape, dtype=np.int16)
    labels = np.empty(spec.geometry.shape, dtype=np.uint8)
    counter = TruthCounter(spec.geometry)
    for k, hu_k, labels_k in iter_slices(spec):
        hu[k], labels[k] = hu_k, labels_k
        counter.add(labels_k)
    return hu, labels, counter.truth()
