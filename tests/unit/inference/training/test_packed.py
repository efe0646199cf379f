"""The packed training slices read back exactly (numpy only: what the lent GPU machine has)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.training.data import SliceSet, load_medseg
from inference.training.packed import read_pack, write_pack

pytestmark = pytest.mark.unit


def test_real_slices_round_trip_and_the_thinning_keeps_every_second(
    shared_data: Path, tmp_path: Path
) -> None:
    medseg = load_medseg(shared_data / "ct-lesions")
    # a CT-Seg-shaped set (lung masks known) made of the same real slices
    lesion = (medseg.classes > 0).astype(np.uint8)
    lung = (medseg.images > 0.3).astype(np.uint8)
    covid = SliceSet(medseg.images, lesion, lung, True, medseg.names)

    sizes = write_pack(tmp_path / "p.npz.xz", covid, medseg, every=2)
    back_covid, back_medseg = read_pack(tmp_path / "p.npz.xz")

    assert sizes["covid_slices"] == 25 and sizes["medseg_slices"] == 50
    assert back_covid.names == medseg.names[::2] and back_medseg.names == medseg.names
    np.testing.assert_array_equal(back_covid.images, medseg.images[::2])  # 8-bit values exact
    np.testing.assert_array_equal(back_covid.classes, lesion[::2])
    np.testing.assert_array_equal(back_covid.lung, lung[::2])
    np.testing.assert_array_equal(back_medseg.classes, medseg.classes)
    np.testing.assert_array_equal(back_medseg.images, medseg.images)
    assert back_covid.has_lung and not back_medseg.has_lung
    assert (back_medseg.lung == 255).all()
    assert set(np.unique(back_medseg.classes)) == {0, 1, 2}
