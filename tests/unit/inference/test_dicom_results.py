"""DICOM SEG + TID 1500 SR built from a quantified series (highdicom), read back and checked."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from dicom_factory import write_ct_series
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO

from inference.dicom_results import build_results, source_headers
from inference.exceptions import InvalidVolume
from inference.volume import load_series

pytestmark = pytest.mark.unit

BIOMARKERS = {
    "lung_volume_ml": 3100.0,
    "lesion_volume_ml": 420.5,
    "lesion_percent": 13.6,
    "ggo_percent": 10.1,
    "consolidation_percent": 3.5,
    "well_aerated_percent": 70.2,
}


def roundtrip(ds):  # noqa: ANN001, ANN201
    buffer = DicomBytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return dcmread(DicomBytesIO(buffer.getvalue()))


def test_segmentation_and_report_reference_the_series(tmp_path: Path) -> None:
    write_ct_series(tmp_path, 10)
    volume = load_series(tmp_path)
    lung = np.zeros(volume.hu.shape, dtype=bool)
    lung[2:8, 4:28, 4:28] = True
    lesion = np.zeros_like(lung)
    lesion[4:6, 10:14, 10:14] = True
    sources = source_headers(volume.source_files)
    results = build_results(sources, lung, lesion, BIOMARKERS, "lesion_threshold", "1")

    seg = hd.seg.Segmentation.from_dataset(roundtrip(results.segmentation))
    assert seg.StudyInstanceUID == volume.study_uid
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Lung", "Lesion"]
    assert seg.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0].CodeValue == "52988006"
    back = seg.get_volume(combine_segments=False).array  # (z, y, x, segment)
    assert int(back[..., 1].sum()) == int(lesion.sum())
    assert int(back[..., 0].sum()) == int(lung.sum())

    sr = hd.sr.Comprehensive3DSR.from_dataset(roundtrip(results.report))
    assert sr.StudyInstanceUID == volume.study_uid
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == 2
    values = {
        (g.finding_type.meaning, m.name.meaning): m.value
        for g in groups
        for m in g.get_measurements()
    }
    assert values[("Lesion", "Lesion percent of lung")] == pytest.approx(13.6)
    assert values[("Lung", "Volume")] == pytest.approx(3100.0)
    units = {m.unit.value for g in groups for m in g.get_measurements()}
    assert units == {"mL", "%"}


def test_masks_must_match_the_series(tmp_path: Path) -> None:
    write_ct_series(tmp_path, 10)
    sources = source_headers(load_series(tmp_path).source_files)
    mask = np.zeros((9, 32, 32), dtype=bool)
    with pytest.raises(InvalidVolume):
        build_results(sources, mask, mask, BIOMARKERS, "lesion_threshold", "1")
