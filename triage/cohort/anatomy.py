"""Analytic chest anatomy of the CT phantom: body, lungs, heart, spine, ribs, vessels, lesions.

Everything is a closed-form shape in patient millimetres (x to the patient's left, y posterior,
``h`` = height above the bottom of the scan), so the same functions rasterise a slice and answer
point queries (used to aim the lesion burden at a target fraction of lung volume).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

Float = NDArray[np.float32] | NDArray[np.float64]
Mask = NDArray[np.bool_]


class TissueLabel(IntEnum):
    """Tissue class of a phantom voxel."""

    AIR = 0
    FAT = 1
    SOFT_TISSUE = 2
    LUNG = 3
    BONE = 4
    VESSEL = 5  # pulmonary vessel, inside the lung
    GGO = 6  # ground-glass opacity
    CONSOLIDATION = 7
    AIRWAY = 8  # trachea (air inside the body, not lung)


LUNG_LABELS = (TissueLabel.LUNG, TissueLabel.VESSEL, TissueLabel.GGO, TissueLabel.CONSOLIDATION)
LESION_LABELS = (TissueLabel.GGO, TissueLabel.CONSOLIDATION)

# Mean HU of each class (lung and lesions get their own values, see phantom.py).
BASE_HU: dict[TissueLabel, float] = {
    TissueLabel.AIR: -1000.0,
    TissueLabel.FAT: -100.0,
    TissueLabel.SOFT_TISSUE: 40.0,
    TissueLabel.LUNG: -850.0,
    TissueLabel.BONE: 700.0,
    TissueLabel.VESSEL: 40.0,
    TissueLabel.GGO: -500.0,
    TissueLabel.CONSOLIDATION: -30.0,
    TissueLabel.AIRWAY: -1000.0,
}


@dataclass(frozen=True)
class Segment:
    """A vessel: a tube from ``p0`` to ``p1`` (x, y, h in mm), radius tapering ``r0`` -> ``r1``."""

    p0: tuple[float, float, float]
    p1: tuple[float, float, float]
    r0_mm: float
    r1_mm: float


@dataclass(frozen=True)
class Blob:
    """A lesion: a rotated ellipsoid, consolidated within ``core_fraction``, ground glass around."""

    center: tuple[float, float, float]
    radii_mm: tuple[float, float, float]
    angle_rad: float
    core_fraction: float  # 0 for a pure ground-glass lesion
    ggo_hu: float
    core_hu: float

    def q(self, x: Float, y: Float, h: float | Float) -> Float:
        """Normalised squared radius (<= 1 inside the ellipsoid)."""
        dx, dy = x - self.center[0], y - self.center[1]
        c, s = np.cos(self.angle_rad), np.sin(self.angle_rad)
        xr, yr = c * dx + s * dy, -s * dx + c * dy
        dh = (h - self.center[2]) / self.radii_mm[2]
        return (xr / self.radii_mm[0]) ** 2 + (yr / self.radii_mm[1]) ** 2 + dh**2

    @property
    def max_radius_mm(self) -> float:
        """Largest semi-axis (for bounding boxes)."""
        return max(self.radii_mm)


@dataclass(frozen=True)
class Anatomy:
    """One patient's chest, in mm. Right lung at negative x, left lung at positive x."""

    body_ax_mm: float
    body_ay_mm: float
    fat_mm: float
    lung_cx_mm: tuple[float, float]  # (right, left)
    lung_ax_mm: tuple[float, float]
    lung_cy_mm: float
    lung_ay_mm: float
    lung_base_h_mm: float
    lung_height_mm: float
    dome_mm: float
    heart_center: tuple[float, float, float]
    heart_radii_mm: tuple[float, float, float]
    spine_cy_mm: float
    spine_r_mm: float
    rib_period_mm: float
    rib_phase_mm: float
    lung_hu: float
    vessels: tuple[Segment, ...] = ()
    bronchi: tuple[Segment, ...] = ()  # seen only where consolidation surrounds them
    lesions: tuple[Blob, ...] = ()

    @property
    def inner_axes_mm(self) -> tuple[float, float]:
        """Semi-axes of the body inside the subcutaneous fat."""
        return self.body_ax_mm - self.fat_mm, self.body_ay_mm - self.fat_mm

    def inner_r2(self, x: Float, y: Float) -> Float:
        """Normalised squared radius inside the fat layer (<= 1 inside the chest wall)."""
        ax, ay = self.inner_axes_mm
        return (x / ax) ** 2 + (y / ay) ** 2

    def lung_side(self, side: int, x: Float, y: Float, h: float | Float) -> tuple[Mask, Float]:
        """Mask of one lung (0 right, 1 left) and the in-plane depth (0 hilum .. 1 pleura)."""
        t = (h - self.lung_base_h_mm) / self.lung_height_mm
        u2 = ((x - self.lung_cx_mm[side]) / self.lung_ax_mm[side]) ** 2 + (
            (y - self.lung_cy_mm) / self.lung_ay_mm
        ) ** 2
        room = np.clip(1.0 - np.asarray(t) ** 2, 1e-6, None)
        floor = self.lung_base_h_mm + self.dome_mm * np.clip(1.0 - u2, 0.0, None)
        inside = (t >= 0) & (t <= 1) & (u2 <= room) & (h >= floor)
        return np.asarray(inside), np.sqrt(u2 / room)

    def in_heart(self, x: Float, y: Float, h: float | Float) -> Mask:
        """Mask of the heart (it carves the cardiac notch out of the lungs)."""
        (cx, cy, ch), (rx, ry, rh) = self.heart_center, self.heart_radii_mm
        return np.asarray(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((h - ch) / rh) ** 2 <= 1)

    def lung_mask(self, x: Float, y: Float, h: float | Float) -> tuple[Mask, Float]:
        """Mask of both lungs and the in-plane depth (0 hilum .. 1 pleura) of lung points."""
        right, depth_r = self.lung_side(0, x, y, h)
        left, depth_l = self.lung_side(1, x, y, h)
        lung = (right | left) & ~self.in_heart(x, y, h) & (self.inner_r2(x, y) < 0.93**2)
        return lung, np.where(right, depth_r, depth_l)

    def height_fraction(self, h: float | Float) -> Float:
        """0 at the lung base, 1 at the apex."""
        return np.asarray((h - self.lung_base_h_mm) / self.lung_height_mm)

    def lung_bbox(self) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
        """Axis-aligned bounding box (x, y, h ranges) of both lungs."""
        x_lo = self.lung_cx_mm[0] - self.lung_ax_mm[0]
        x_hi = self.lung_cx_mm[1] + self.lung_ax_mm[1]
        y_lo, y_hi = self.lung_cy_mm - self.lung_ay_mm, self.lung_cy_mm + self.lung_ay_mm
        h_lo, h_hi = self.lung_base_h_mm, self.lung_base_h_mm + self.lung_height_mm
        return (x_lo, x_hi), (y_lo, y_hi), (h_lo, h_hi)

    def lesion_label(self, x: Float, y: Float, h: float | Float) -> NDArray[np.uint8]:
        """Lesion class at arbitrary points, ignoring vessels and the lung mask (0 = none)."""
        out = np.zeros(np.broadcast(x, y).shape, dtype=np.uint8)
        for blob in self.lesions:
            q = blob.q(x, y, h)
            out[(q <= 1) & (out == 0)] = TissueLabel.GGO
            out[q <= blob.core_fraction**2] = TissueLabel.CONSOLIDATION
        return out


def sample_anatomy(rng: np.random.Generator, obese: bool, scan_length_mm: float) -> Anatomy:
    """Draw a plausible adult chest that fits in ``scan_length_mm`` (no vessels or lesions)."""
    body = float(rng.normal(1.0, 0.05)) * (1.12 if obese else 1.0)
    fat = float(rng.uniform(25, 40) if obese else rng.uniform(8, 20))
    lung = float(np.clip(rng.normal(1.0, 0.07), 0.85, 1.15))
    height = float(np.clip(235.0 * lung, 190.0, scan_length_mm - 45.0))
    base = float(min(rng.uniform(30, 45), scan_length_mm - height - 10.0))
    return Anatomy(
        body_ax_mm=165.0 * body + fat - 15.0,
        body_ay_mm=118.0 * body + fat - 15.0,
        fat_mm=fat,
        lung_cx_mm=(-78.0 * lung, 76.0 * lung),
        lung_ax_mm=(54.0 * lung, 50.0 * lung),
        lung_cy_mm=-2.0,
        lung_ay_mm=82.0 * lung,
        lung_base_h_mm=base,
        lung_height_mm=height,
        dome_mm=float(rng.uniform(25, 40)),
        heart_center=(22.0, -28.0, base + 45.0),
        heart_radii_mm=(58.0 * lung, 50.0 * lung, 65.0),
        spine_cy_mm=0.7 * (118.0 * body - 15.0),
        spine_r_mm=17.0,
        rib_period_mm=float(rng.uniform(22, 27)),
        rib_phase_mm=float(rng.uniform(0, 25)),
        lung_hu=float(rng.normal(-850, 12)),
    )


def sample_lung_points(
    rng: np.random.Generator, anatomy: Anatomy, n: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``n`` points uniformly distributed in the lungs, as an (n, 3) array, and their depth."""
    (x0, x1), (y0, y1), (h0, h1) = anatomy.lung_bbox()
    chunks: list[NDArray[np.float64]] = []
    depths: list[NDArray[np.float64]] = []
    have = 0
    while have < n:
        p = rng.uniform((x0, y0, h0), (x1, y1, h1), size=(2 * n, 3))
        inside, depth = anatomy.lung_mask(p[:, 0], p[:, 1], p[:, 2])
        chunks.append(np.asarray(p[inside], dtype=np.float64))
        depths.append(np.asarray(depth, dtype=np.float64)[inside])
        have += int(inside.sum())
    return np.concatenate(chunks)[:n], np.concatenate(depths)[:n]


def sample_vessels(rng: np.random.Generator, anatomy: Anatomy) -> tuple[Segment, ...]:
    """Draw a two-generation pulmonary vessel tree per lung, from the hilum to the pleura."""
    points, depth = sample_lung_points(rng, anatomy, 4000)
    segments: list[Segment] = []
    for side, medial in ((0, 1.0), (1, -1.0)):
        hilum = (
            anatomy.lung_cx_mm[side] + medial * 0.55 * anatomy.lung_ax_mm[side],
            anatomy.lung_cy_mm - 0.05 * anatomy.lung_ay_mm,
            anatomy.lung_base_h_mm + 0.5 * anatomy.lung_height_mm,
        )
        own = points[np.sign(points[:, 0]) == (-1.0 if side == 0 else 1.0)]
        own_depth = depth[np.sign(points[:, 0]) == (-1.0 if side == 0 else 1.0)]
        mid = own[(own_depth > 0.35) & (own_depth < 0.7)]
        outer = own[own_depth > 0.75]
        for target in mid[rng.choice(len(mid), size=9, replace=False)]:
            t = tuple(float(v) for v in target)
            segments.append(Segment(hilum, (t[0], t[1], t[2]), 4.5, 2.5))
            near = outer[np.linalg.norm(outer - target, axis=1) < 70.0]
            if len(near) == 0:
                continue
            for leaf in near[rng.choice(len(near), size=min(2, len(near)), replace=False)]:
                segments.append(
                    Segment((t[0], t[1], t[2]), tuple(float(v) for v in leaf), 2.5, 1.0)  # type: ignore[arg-type]
                )
    return tuple(segments)


def sample_bronchi(vessels: tuple[Segment, ...]) -> tuple[Segment, ...]:
    """The bronchus beside each artery: same course, shifted by its radius plus 1.5 mm, thinner.

    Bronchi and pulmonary arteries run in pairs; in aerated lung the bronchial lumen is air like
    the lung around it, so only consolidation shows them (air bronchograms).
    """
    out = []
    for seg in vessels:
        axis = np.subtract(seg.p1, seg.p0)
        side = np.cross(axis, (0.0, 0.0, 1.0))
        if not np.linalg.norm(side):
            side = np.array([1.0, 0.0, 0.0])
        side = side / np.linalg.norm(side)
        shift0, shift1 = side * (seg.r0_mm + 1.5), side * (seg.r1_mm + 1.5)
        out.append(
            Segment(
                tuple(float(v) for v in np.add(seg.p0, shift0)),  # type: ignore[arg-type]
                tuple(float(v) for v in np.add(seg.p1, shift1)),  # type: ignore[arg-type]
                0.7 * seg.r0_mm,
                0.7 * seg.r1_mm,
            )
        )
    return tuple(out)


def sample_lesions(
    rng: np.random.Generator,
    anatomy: Anatomy,
    target_fraction: float,
    consolidation_share: float,
    max_blobs: int = 400,
    involved: Callable[[NDArray[np.float64]], Mask] | None = None,
) -> tuple[Blob, ...]:
    """Lesion clusters, peripheral and basal, added until ~``target_fraction`` of lung is hit.

    The fraction is estimated on random lung points (the exact volume is measured on the
    rasterised volume by the caller); ``involved(points)`` says which points a lesion's outline
    would really make diseased (the rest are spared lobules), all of them when None.
    """
    if target_fraction <= 0.0:
        return ()
    cloud, depth = sample_lung_points(rng, anatomy, 30000)
    counts = np.ones(len(cloud), dtype=bool) if involved is None else involved(cloud)
    t = anatomy.height_fraction(cloud[:, 2])
    weight = np.clip(depth, 0, 1) ** 2.5 * np.clip(1.6 - t, 0.2, None) ** 1.5
    weight = weight / weight.sum()
    covered = np.zeros(len(cloud), dtype=bool)
    blobs: list[Blob] = []
    scale = 1.0 + 1.5 * target_fraction
    while covered.mean() < target_fraction and len(blobs) < max_blobs:
        center = cloud[rng.choice(len(cloud), p=weight)]
        consolidating = rng.random() < consolidation_share
        for _ in range(int(rng.integers(1, 4))):
            r = float(rng.uniform(9.0, 22.0)) * scale
            offset = rng.normal(0.0, 0.5 * r, size=3)
            blob = Blob(
                center=(
                    float(center[0] + offset[0]),
                    float(center[1] + offset[1]),
                    float(center[2] + offset[2]),
                ),
                radii_mm=(
                    r * float(rng.uniform(0.7, 1.3)),
                    r * float(rng.uniform(0.7, 1.3)),
                    1.3 * r * float(rng.uniform(0.7, 1.3)),
                ),
                angle_rad=float(rng.uniform(0, np.pi)),
                core_fraction=float(rng.uniform(0.5, 0.8)) if consolidating else 0.0,
                ggo_hu=float(rng.uniform(-700, -520)),
                core_hu=float(rng.uniform(-150, 30)),
            )
            blobs.append(blob)
            covered |= (blob.q(cloud[:, 0], cloud[:, 1], cloud[:, 2]) <= 1) & counts
    return tuple(blobs)
