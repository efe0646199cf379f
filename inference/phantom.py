"""A synthetic chest CT phantom with known lung and lesion volumes, for tests and benchmarks.

Body: an elliptic cylinder of soft tissue (40 HU) in air (-1000 HU). Lungs: two ellipsoids of
-850 HU. Lesions: a ground-glass sphere (-500 HU) in the right lung and a consolidation sphere
(-100 HU) in the left. Optional: thin vessels (40 HU, 1.5 mm radius tubes along z), an airway
bridge joining the lungs, a gas pocket below them. Gaussian noise with a fixed seed.
Geometry is in millimetres about the volume centre; x = columns, y = rows, z = slices.
Synthetic: it checks the arithmetic and the morphology, not clinical accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BODY_HU, LUNG_HU, GGO_LESION_HU, CONSOLIDATION_LESION_HU, AIR_HU = 40, -850, -500, -100, -1000
BODY_SEMI_AXES_MM = (140.0, 100.0)  # x, y
LUNG_CENTRES_MM = ((-65.0, 0.0, 0.0), (65.0, 0.0, 0.0))  # x, y, z (right lung at -x)
LUNG_SEMI_AXES_MM = (45.0, 65.0, 70.0)
GGO_CENTRE_MM, GGO_RADIUS_MM = (-65.0, -10.0, 10.0), 15.0
CONSOLIDATION_CENTRE_MM, CONSOLIDATION_RADIUS_MM = (65.0, 15.0, -15.0), 12.0
VESSEL_XY_MM = (
    (-85.0, 25.0),
    (-50.0, 30.0),
    (-75.0, -40.0),
    (-40.0, -20.0),
    (-90.0, 0.0),
    (-60.0, 45.0),
    (85.0, -25.0),
    (50.0, -30.0),
    (40.0, 10.0),
    (90.0, 5.0),
    (70.0, -45.0),
)
VESSEL_RADIUS_MM = 1.5
BRIDGE_RADIUS_MM, BRIDGE_Z_MM = 6.0, 45.0
GAS_CENTRE_MM, GAS_RADIUS_MM = (0.0, 40.0, -72.0), 7.0


@dataclass(frozen=True)
class Phantom:
    """The volume and its truth, counted on the voxel grid (so free of sampling error)."""

    hu: np.ndarray  # int16 (z, y, x)
    spacing_mm: tuple[float, float, float]
    lung_volume_ml: float  # lungs including lesions, vessels and the airway bridge
    ggo_volume_ml: float
    consolidation_volume_ml: float
    vessel_volume_ml: float

    @property
    def lesion_volume_ml(self) -> float:
        """Ground glass plus consolidation, mL."""
        return self.ggo_volume_ml + self.consolidation_volume_ml


def _grid(
    shape: tuple[int, int, int], spacing_mm: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel-centre coordinates (z, y, x) in mm about the volume centre, broadcastable."""
    axes = [(np.arange(n) - (n - 1) / 2.0) * s for n, s in zip(shape, spacing_mm, strict=True)]
    z, y, x = axes
    return z[:, None, None], y[None, :, None], x[None, None, :]


def _ellipsoid(
    z: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    centre: tuple[float, float, float],
    semi_axes: tuple[float, float, float],
) -> np.ndarray:
    cx, cy, cz = centre
    ax, ay, az = semi_axes
    return np.asarray(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2 <= 1.0)


def chest_phantom(
    shape: tuple[int, int, int] = (80, 256, 256),
    spacing_mm: tuple[float, float, float] = (2.0, 1.2, 1.2),
    noise_hu: float = 15.0,
    seed: int = 0,
    vessels: bool = False,
    airway_bridge: bool = False,
    gas_pocket: bool = False,
) -> Phantom:
    """Render the phantom; the field of view must hold the body (about 280 x 200 x 150 mm)."""
    z, y, x = _grid(shape, spacing_mm)
    body = np.broadcast_to(
        ((x / BODY_SEMI_AXES_MM[0]) ** 2 + (y / BODY_SEMI_AXES_MM[1]) ** 2) <= 1.0, shape
    )
    lung = np.zeros(shape, dtype=bool)
    for centre in LUNG_CENTRES_MM:
        lung |= _ellipsoid(z, y, x, centre, LUNG_SEMI_AXES_MM)
    if airway_bridge:
        tube = ((y**2 + (z - BRIDGE_Z_MM) ** 2) <= BRIDGE_RADIUS_MM**2) & (np.abs(x) <= 70.0)
        lung |= tube & body
    r_ggo, r_cons = (GGO_RADIUS_MM,) * 3, (CONSOLIDATION_RADIUS_MM,) * 3
    ggo = _ellipsoid(z, y, x, GGO_CENTRE_MM, r_ggo) & lung
    consolidation = _ellipsoid(z, y, x, CONSOLIDATION_CENTRE_MM, r_cons) & lung
    vessel = np.zeros(shape, dtype=bool)
    if vessels:
        for vx, vy in VESSEL_XY_MM:
            vessel |= np.broadcast_to(((x - vx) ** 2 + (y - vy) ** 2) <= VESSEL_RADIUS_MM**2, shape)
        vessel &= lung & ~ggo & ~consolidation
    hu = np.full(shape, AIR_HU, dtype=np.float32)
    hu[body] = BODY_HU
    hu[lung] = LUNG_HU
    hu[vessel] = BODY_HU
    hu[ggo] = GGO_LESION_HU
    hu[consolidation] = CONSOLIDATION_LESION_HU
    if gas_pocket:
        hu[_ellipsoid(z, y, x, GAS_CENTRE_MM, (GAS_RADIUS_MM,) * 3) & body & ~lung] = AIR_HU
    if noise_hu > 0:
        hu += np.random.default_rng(seed).normal(0.0, noise_hu, size=shape).astype(np.float32)
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    return Phantom(
        hu=np.clip(np.rint(hu), -1024, 3071).astype(np.int16),
        spacing_mm=(float(spacing_mm[0]), float(spacing_mm[1]), float(spacing_mm[2])),
        lung_volume_ml=float(lung.sum()) * voxel_ml,
        ggo_volume_ml=float(ggo.sum()) * voxel_ml,
        consolidation_volume_ml=float(consolidation.sum()) * voxel_ml,
        vessel_volume_ml=float(vessel.sum()) * voxel_ml,
    )
