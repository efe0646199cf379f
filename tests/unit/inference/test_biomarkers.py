"""quantify_threshold on a synthetic phantom of known volumes, and its input validation.

Tolerances: the phantom's truth is counted on the same voxel grid, so sampling error is zero;
what remains is the coarse-grid lung mask (its border is refined at full resolution) and the
lesion opening, which trims sphere caps thinner than the 2.5 mm disk. Measured errors are
below 0.5 %; the asserts allow 2 % (lung) and 5 % (lesions), tight enough to catch a lost
component, a missed hole fill or vessels counted as lesions (each > 10 %).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from inference.biomarkers import NO_LUNG, Biomarkers, quantify_threshold
from inference.exceptions import InferenceError, InvalidVolume
from inference.lungmask import lung_mask
from inference.phantom import Phantom, chest_phantom

pytestmark = pytest.mark.unit

LUNG_TOLERANCE = 0.02
LESION_TOLERANCE = 0.05
logger = logging.getLogger(__name__)


def relative_error(measured: float, truth: float) -> float:
    return abs(measured - truth) / truth


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return chest_phantom(seed=7, vessels=True)


def test_phantom_volumes(phantom: Phantom) -> None:
    result = quantify_threshold(phantom.hu, phantom.spacing_mm)
    lung_error = relative_error(result.lung_volume_ml, phantom.lung_volume_ml)
    lesion_error = relative_error(result.lesion_volume_ml, phantom.lesion_volume_ml)
    print(  # the numbers the README quotes; run with -s to see them
        f"lung {result.lung_volume_ml:.1f} mL vs {phantom.lung_volume_ml:.1f} ({lung_error:.2%}); "
        f"lesion {result.lesion_volume_ml:.2f} mL vs {phantom.lesion_volume_ml:.2f} "
        f"({lesion_error:.2%})"
    )
    assert lung_error < LUNG_TOLERANCE
    assert lesion_error < LESION_TOLERANCE


def test_ggo_and_consolidation_are_split(phantom: Phantom) -> None:
    result = quantify_threshold(phantom.hu, phantom.spacing_mm)
    ggo_ml = result.ggo_percent / 100 * result.lung_volume_ml
    consolidation_ml = result.consolidation_percent / 100 * result.lung_volume_ml
    assert relative_error(ggo_ml, phantom.ggo_volume_ml) < LESION_TOLERANCE
    assert relative_error(consolidation_ml, phantom.consolidation_volume_ml) < LESION_TOLERANCE
    assert result.lesion_percent == pytest.approx(result.ggo_percent + result.consolidation_percent)
    assert result.lesion_percent == pytest.approx(
        100 * result.lesion_volume_ml / result.lung_volume_ml
    )
    # the rest of the lung is -850 HU: well aerated
    assert result.well_aerated_percent == pytest.approx(
        100 - result.lesion_percent - 100 * phantom.vessel_volume_ml / phantom.lung_volume_ml,
        abs=1.0,
    )


def test_thin_vessels_are_lung_but_not_lesion(phantom: Phantom) -> None:
    assert phantom.vessel_volume_ml > 0.2 * phantom.lesion_volume_ml  # they would show
    plain = chest_phantom(seed=7, vessels=False)
    with_vessels = quantify_threshold(phantom.hu, phantom.spacing_mm)
    without = quantify_threshold(plain.hu, plain.spacing_mm)
    assert with_vessels.lesion_volume_ml == pytest.approx(without.lesion_volume_ml, rel=0.01)
    assert with_vessels.lung_volume_ml == pytest.approx(without.lung_volume_ml, rel=0.01)


def test_outside_air_and_gas_are_not_lung() -> None:
    """Lungs joined by an airway are one component; a small gas pocket is not the second lung."""
    phantom = chest_phantom(seed=3, airway_bridge=True, gas_pocket=True)
    result = quantify_threshold(phantom.hu, phantom.spacing_mm)
    assert relative_error(result.lung_volume_ml, phantom.lung_volume_ml) < LUNG_TOLERANCE


def test_mask_holds_lesions_inside_lungs(phantom: Phantom) -> None:
    mask = lung_mask(phantom.hu, phantom.spacing_mm)
    assert mask.shape == phantom.hu.shape
    dense = (phantom.hu > -700) & mask
    assert dense.sum() * np.prod(phantom.spacing_mm) / 1000 > phantom.lesion_volume_ml


def test_float_input_matches_int16(phantom: Phantom) -> None:
    as_int = quantify_threshold(phantom.hu, phantom.spacing_mm)
    as_float = quantify_threshold(phantom.hu.astype(np.float32), phantom.spacing_mm)
    assert as_float.as_dict() == pytest.approx(as_int.as_dict())


def test_coarse_matrix_without_downsampling() -> None:
    phantom = chest_phantom(shape=(48, 128, 128), spacing_mm=(3.5, 2.4, 2.4), seed=1)
    result = quantify_threshold(phantom.hu, phantom.spacing_mm)
    assert relative_error(result.lung_volume_ml, phantom.lung_volume_ml) < LUNG_TOLERANCE
    assert relative_error(result.lesion_volume_ml, phantom.lesion_volume_ml) < 0.1


def test_no_lung_gives_zeros() -> None:
    soft_tissue = np.full((10, 64, 64), 40, dtype=np.int16)
    assert quantify_threshold(soft_tissue, (2.0, 1.0, 1.0)) == NO_LUNG
    only_air = np.full((10, 64, 64), -1000, dtype=np.int16)  # all outside air
    assert quantify_threshold(only_air, (2.0, 1.0, 1.0)) == NO_LUNG


def test_as_dict_and_names() -> None:
    names = Biomarkers.names()
    assert names == (
        "lung_volume_ml",
        "lesion_volume_ml",
        "lesion_percent",
        "ggo_percent",
        "consolidation_percent",
        "well_aerated_percent",
    )
    values = Biomarkers(1.0, 2.0, 3.0, 4.0, 5.0, 6.0).as_dict()
    assert list(values) == list(names)
    assert all(isinstance(v, float) for v in values.values())


@pytest.mark.parametrize(
    ("hu", "spacing"),
    [
        (np.zeros((0, 0, 0), dtype=np.int16), (1.0, 1.0, 1.0)),
        (np.zeros((64, 64), dtype=np.int16), (1.0, 1.0, 1.0)),
        (np.zeros((2, 64, 64), dtype=np.int16), (1.0, 1.0, 1.0)),
        (np.zeros((8, 8, 8), dtype=bool), (1.0, 1.0, 1.0)),
        (np.zeros((8, 8, 8), dtype=np.int16), (1.0, -1.0, 1.0)),
        (np.zeros((8, 8, 8), dtype=np.int16), (1.0, float("nan"), 1.0)),
        (np.zeros((8, 8, 8), dtype=np.int16), (1.0, 1.0)),
        (np.zeros((8, 8, 8), dtype=np.int16), ("a", "b", "c")),
        ([[[0]]], (1.0, 1.0, 1.0)),
    ],
)
def test_invalid_volumes_are_rejected(hu: np.ndarray, spacing: tuple[float, float, float]) -> None:
    with pytest.raises(InvalidVolume) as caught:
        quantify_threshold(hu, spacing)
    assert isinstance(caught.value, InferenceError)
    assert isinstance(caught.value, ValueError)
