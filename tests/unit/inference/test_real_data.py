"""The real COVID-CT-MD series (JPEG Lossless DICOM) load and quantify plausibly.

Skipped only where ../shared/data is absent (the shared_data fixture says so).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from inference.biomarkers import Biomarkers, quantify_threshold, threshold_masks
from inference.volume import CtVolume, load_series

pytestmark = pytest.mark.unit

JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"


@pytest.fixture(scope="module")
def covid_dir(shared_data: Path) -> Path:
    return shared_data / "dicom" / "covid-ct-md"


@pytest.fixture(scope="module")
def p001(covid_dir: Path) -> CtVolume:
    return load_series(covid_dir / "P001")


@pytest.fixture(scope="module")
def p001_biomarkers(p001: CtVolume) -> Biomarkers:
    return quantify_threshold(p001.hu, p001.spacing_mm)


def test_p001_is_jpeg_lossless_and_loads(covid_dir: Path, p001: CtVolume) -> None:
    first = next((covid_dir / "P001").glob("*.dcm"))
    assert dcmread(first, stop_before_pixels=True).file_meta.TransferSyntaxUID == JPEG_LOSSLESS_SV1
    assert p001.hu.shape == (148, 512, 512)
    assert p001.hu.dtype == np.int16
    assert p001.spacing_mm == pytest.approx((2.0, 0.748046875, 0.748046875))
    assert -1100 <= int(p001.hu.min()) <= -900  # air
    assert 1000 <= int(p001.hu.max()) <= 3071  # bone, no overflow
    assert p001.study_uid.startswith("1.3.12.2.1107.5.1.4.93005")


def test_p001_slices_are_sorted_along_z(covid_dir: Path, p001: CtVolume) -> None:
    by_z = sorted(
        (float(dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]), f)
        for f in (covid_dir / "P001").glob("*.dcm")
    )
    for k in (0, 73, 147):
        ds = dcmread(by_z[k][1])
        expected = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        np.testing.assert_array_equal(p001.hu[k], expected)


def test_p001_lesions_sit_on_the_radiologists_infected_slices(
    covid_dir: Path, p001: CtVolume
) -> None:
    """Slice labels count from the highest z (see the data README); our z ascends."""
    with (covid_dir / "P001-slice-labels.csv").open() as f:
        infected = np.array([int(row["infected"]) for row in csv.DictReader(f)], dtype=bool)
    lung, lesion = threshold_masks(p001.hu, p001.spacing_mm)
    per_slice = lesion.sum(axis=(1, 2)) / np.maximum(lung.sum(axis=(1, 2)), 1)
    from_top = per_slice[::-1]
    assert infected.shape == from_top.shape
    positives, negatives = from_top[infected], from_top[~infected]
    auc = float(np.mean(positives[:, None] > negatives[None, :]))
    print(f"P001 slice-level AUC {auc:.3f}")
    assert positives.mean() > 2 * negatives.mean()
    assert auc > 0.8


def test_normal_has_less_lesion_than_covid(covid_dir: Path, p001_biomarkers: Biomarkers) -> None:
    normal = load_series(covid_dir / "normal001")
    assert normal.hu.shape == (154, 512, 512)
    control = quantify_threshold(normal.hu, normal.spacing_mm)
    print(f"P001 {p001_biomarkers.as_dict()}\nnormal001 {control.as_dict()}")
    for result in (p001_biomarkers, control):
        assert 2000 < result.lung_volume_ml < 9000  # adult lungs
        assert result.well_aerated_percent > 70
    assert control.lesion_percent < p001_biomarkers.lesion_percent
    assert control.lesion_percent < 2.5
