"""A CT without lungs is refused (no_lung_found) instead of being quantified as 0 mL of lung."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.chest import MIN_LUNG_ML, check_chest, lung_air_ml
from inference.client import THRESHOLD_MODEL
from inference.exceptions import SeriesRejected, SeriesRejectionReason
from inference.lungmask import lung_mask
from inference.phantom import chest_phantom
from inference.quantify import quantify_series
from inference.volume import load_series

pytestmark = pytest.mark.unit


def test_real_chest_slab_passes_and_agrees_with_the_lung_mask(chest_slab: Path) -> None:
    volume = load_series(chest_slab)
    found_ml = check_chest(volume.hu, volume.spacing_mm)
    mask_ml = lung_mask(volume.hu, volume.spacing_mm).sum() * np.prod(volume.spacing_mm) / 1000
    assert found_ml > 4 * MIN_LUNG_ML
    assert found_ml == pytest.approx(mask_ml, rel=0.1)


def test_real_abdomen_is_refused(abdomen_slab: Path) -> None:
    volume = load_series(abdomen_slab)
    with pytest.raises(SeriesRejected) as caught:
        check_chest(volume.hu, volume.spacing_mm)
    assert caught.value.reason is SeriesRejectionReason.NO_LUNG_FOUND
    assert "not a chest CT" in caught.value.detail


def test_quantify_refuses_a_volume_without_lungs(abdomen_slab: Path) -> None:
    with pytest.raises(SeriesRejected) as caught:
        quantify_series(abdomen_slab, THRESHOLD_MODEL, "local", local=True, url="", timeout_s=1)
    assert caught.value.reason is SeriesRejectionReason.NO_LUNG_FOUND


def test_phantom_chest_passes() -> None:
    phantom = chest_phantom(shape=(40, 128, 128), spacing_mm=(3.5, 2.4, 2.4), seed=2)
    assert lung_air_ml(phantom.hu, phantom.spacing_mm) > MIN_LUNG_ML


def test_air_outside_the_body_is_no_lung() -> None:
    """Air that reaches the edge of the field of view (around the patient) never counts."""
    hu = np.full((20, 64, 64), -1000, dtype=np.int16)
    hu[:, 20:44, 20:44] = 40  # a soft-tissue block in air: no air inside it
    assert lung_air_ml(hu, (2.0, 1.0, 1.0)) == 0.0
