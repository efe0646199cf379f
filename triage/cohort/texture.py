"""Smooth random fields and scanner noise for the CT phantom, matched to real chest CT.

The phantom's lesions and parenchyma need texture that is continuous in 3-D (so neighbouring
slices agree) and fixed in millimetres (so the matrix changes only the sampling). A
:class:`WaveField` is a sum of random plane waves: a stationary, zero-mean, unit-variance field
whose spectrum is set by the wavelengths drawn. On a slice grid it is one small complex matrix
product, ``Re((E_y^T * c) @ E_x)``, because ``exp(i k.p)`` separates into x, y and h factors.

The HU statistics were measured on the two real series in ``../shared/data/dicom/covid-ct-md``
(P001, normal001; lung parenchyma = classical lung mask minus lesions, below -650 HU), after
block-averaging them to the phantom's voxel sizes (0.75-3 mm in plane, 2-6 mm slices):

- noise (median SD in 5 x 5 windows of soft tissue, 20-70 HU), P001 / normal001: 24.5 / 25.3
  HU at their own 0.75 / 0.63 mm pixels and 2 mm slices, 18.8 / 20.9 at 2 x 2 pixels,
  14.7 / 14.5 at 4 x 4, 15.2 / 16.8 at 2 x 2 pixels and 2 slices, 13.5 / 12.7 at 4 x 4 and 2,
  13.0 / 12.1 at 4 x 4 and 3; fitted by ``NOISE_HU * pixel_mm ** -NOISE_PIXEL_EXPONENT *
  slice_mm ** -NOISE_SLICE_EXPONENT`` (every point within 9 %); neighbouring pixels correlate
  (0.54 / 0.72), which a Gaussian kernel of ``NOISE_CORRELATION_MM`` reproduces;
- parenchyma: mean -850 / -830 HU, SD 58 / 53 HU at full resolution, 50 / 44 HU at 3 x 3 x 6 mm
  (small vessels, gravity gradient and noise together).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

Float32 = NDArray[np.float32]

NOISE_HU = 24.6  # local noise SD of a 1 x 1 x 1 mm voxel
NOISE_PIXEL_EXPONENT, NOISE_SLICE_EXPONENT = 0.353, 0.194
NOISE_CORRELATION_MM = 0.5  # SD of the Gaussian kernel that correlates neighbouring pixels
NOISE_WINDOW = 5  # side of the windows the local SD is measured in (real series and phantom)


@dataclass(frozen=True)
class WaveField:
    """Sum of plane waves in patient mm (x, y, h): zero mean, unit variance."""

    wave_vectors: tuple[tuple[float, float, float], ...]  # rad/mm along x, y, h
    phases: tuple[float, ...]

    def on_grid(self, xs: Float32, ys: Float32, h: float) -> Float32:
        """Field on the grid ``ys`` (rows) x ``xs`` (columns) of the slice at height ``h``."""
        k = np.asarray(self.wave_vectors, dtype=np.float64)
        weight = np.exp(1j * (k[:, 2] * h + np.asarray(self.phases))) * np.sqrt(2.0 / len(k))
        along_x = np.exp(1j * np.outer(k[:, 0], xs))  # (waves, columns)
        along_y = np.exp(1j * np.outer(k[:, 1], ys))  # (waves, rows)
        return ((along_y.T * weight) @ along_x).real.astype(np.float32)

    def at(self, x: NDArray[np.float64], y: NDArray[np.float64], h: NDArray[np.float64]) -> Float32:
        """Field at arbitrary points (same shape as ``x``)."""
        k = np.asarray(self.wave_vectors, dtype=np.float64)
        p = np.stack([np.ravel(x), np.ravel(y), np.ravel(h)], axis=1)
        waves = np.cos(p @ k.T + np.asarray(self.phases)).sum(axis=1) * np.sqrt(2.0 / len(k))
        return waves.reshape(np.shape(x)).astype(np.float32)


def sample_wave_field(
    rng: np.random.Generator, waves: int, wavelength_mm: tuple[float, float]
) -> WaveField:
    """Random directions, log-uniform wavelengths in ``wavelength_mm``, uniform phases."""
    direction = rng.normal(size=(waves, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    low, high = np.log(wavelength_mm[0]), np.log(wavelength_mm[1])
    k = direction * (2 * np.pi / np.exp(rng.uniform(low, high, size=(waves, 1))))
    return WaveField(
        wave_vectors=tuple((float(a), float(b), float(c)) for a, b, c in k),
        phases=tuple(float(p) for p in rng.uniform(0, 2 * np.pi, size=waves)),
    )


@dataclass(frozen=True)
class Textures:
    """One patient's texture fields (see :func:`sample_textures` for their scales)."""

    parenchyma: WaveField  # small vessels and interstitium of normal lung
    involvement: WaveField  # which lobules inside a lesion's outline are diseased
    lesion: WaveField  # fine patchy density inside ground glass and consolidation
    reticulation: WaveField  # thin septal lines of crazy paving inside ground glass
    margin: WaveField  # lobulated, irregular lesion borders


def sample_textures(rng: np.random.Generator) -> Textures:
    """Draw the texture fields of one patient."""
    return Textures(
        parenchyma=sample_wave_field(rng, 64, (2.5, 9.0)),
        involvement=sample_wave_field(rng, 48, (12.0, 36.0)),
        lesion=sample_wave_field(rng, 48, (5.0, 16.0)),
        reticulation=sample_wave_field(rng, 48, (6.0, 14.0)),
        margin=sample_wave_field(rng, 32, (12.0, 40.0)),
    )


INVOLVED_MEAN, INVOLVED_SD = 0.85, 0.45


def involvement(field: Float32) -> Float32:
    """Share of a lesion's density a lobule carries (0 spared .. 1 fully): a mosaic, not a blob.

    Where it is below 0.5 the lobule is spared (normal lung inside the lesion's outline); the
    truth counts a voxel as lesion where lesion amount = edge profile x involvement >= 0.5.
    """
    return np.asarray(np.clip(INVOLVED_MEAN + INVOLVED_SD * field, 0.0, 1.0), dtype=np.float32)


def parenchyma_texture_hu(field: Float32) -> Float32:
    """Positively skewed HU offsets (bright dots and lines: small vessels), mean 0, SD ~40."""
    bright = np.maximum(field - 0.6, 0.0)
    return np.asarray(110.0 * bright**1.5 - 14.0, dtype=np.float32)


def reticulation_hu(field: Float32) -> Float32:
    """Thin bright lines where the field crosses zero (septa), 0 elsewhere; up to +90 HU."""
    return np.asarray(90.0 * np.exp(-((field / 0.22) ** 2)), dtype=np.float32)


def noise_sd_hu(spacing_mm: tuple[float, float, float]) -> float:
    """Local noise SD (5 x 5 windows) of a voxel this size, as on the real series (module doc)."""
    slice_mm, pixel_mm = spacing_mm[0], min(spacing_mm[1:])
    return float(NOISE_HU * pixel_mm**-NOISE_PIXEL_EXPONENT * slice_mm**-NOISE_SLICE_EXPONENT)


def _correlation_kernel_px(spacing_mm: tuple[float, float, float]) -> float:
    """SD (pixels) of the correlating kernel; 0 when it is narrower than a third of a pixel."""
    sigma_px = NOISE_CORRELATION_MM / min(spacing_mm[1:])
    return sigma_px if sigma_px >= 0.3 else 0.0


@lru_cache(maxsize=16)
def _window_variance_share(sigma_px: float) -> float:
    """Expected variance inside a window over the field's variance, for the correlated noise.

    A window's values share part of their variance (they correlate): E[window variance] =
    var * (1 - mean correlation over all ordered pixel pairs of the window, itself included).
    """
    n = NOISE_WINDOW
    impulse = np.zeros((4 * n + 1, 4 * n + 1))
    impulse[2 * n, 2 * n] = 1.0
    kernel = ndimage.gaussian_filter(impulse, sigma_px) if sigma_px else impulse
    auto = ndimage.correlate(kernel, kernel, mode="constant")
    auto /= auto[2 * n, 2 * n]
    offsets = np.arange(-(n - 1), n)
    weights = (n - np.abs(offsets))[:, None] * (n - np.abs(offsets))[None, :]
    window = auto[2 * n - (n - 1) : 2 * n + n, 2 * n - (n - 1) : 2 * n + n]
    return float(1.0 - (weights * window).sum() / n**4)


def scanner_noise(
    rng: np.random.Generator, shape: tuple[int, int], spacing_mm: tuple[float, float, float]
) -> Float32:
    """Correlated Gaussian noise of one slice whose local SD is :func:`noise_sd_hu`."""
    white = rng.standard_normal(shape, dtype=np.float32)
    sigma_px = _correlation_kernel_px(spacing_mm)
    if sigma_px:
        white = ndimage.gaussian_filter(white, sigma_px, mode="wrap")
        white /= float(white.std()) or 1.0
    scale = noise_sd_hu(spacing_mm) / np.sqrt(_window_variance_share(sigma_px))
    return np.asarray(white * scale, dtype=np.float32)
