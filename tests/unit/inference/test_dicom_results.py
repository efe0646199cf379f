"""DICOM SEG + TID 1500 SR built from a quantified series (highdicom), read back and checked."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from dicom_factory import write_ct_series
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO

from inference.dicom_results import PriorComparison, build_results, source_headers
from inference.exceptions import InvalidVolume
from inference.frames import stack_order
from inference.headers import raw_text
from inference.uids import is_conformant_uid
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


def _odd_uids(k: int, ds: Dataset) -> None:
    """UIDs as anonymisers write them: a UUID study, leading zeros, a SOP UID over 64 chars."""
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        delattr(ds, keyword)  # new elements take the (disabled) validation mode
    del ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = ODD_STUDY
    ds.SeriesInstanceUID = ODD_SERIES
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{ODD_SERIES}.{k:070d}"


ODD_STUDY = "896911bf-1143-4c8d-8f04-f3cd1a7f6204"
ODD_SERIES = "1.2.840.0099.007"


def _masks(slices: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    lung = np.zeros((slices, size, size), dtype=bool)
    lung[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = True
    lesion = np.zeros_like(lung)
    for k in range(slices):
        lesion[k, size // 4 + k, size // 4 : size // 4 + 2] = True  # slice k marked at row k
    return lung, lesion


def test_results_reference_the_original_uids_and_carry_conformant_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_ct_series(tmp_path, 10, edit=_odd_uids)
    volume = load_series(tmp_path)
    assert volume.study_uid == ODD_STUDY and volume.series_uid == ODD_SERIES
    with caplog.at_level(logging.WARNING):
        sources = source_headers(volume.source_files)
        results = build_results(sources, *_masks(10, 32), BIOMARKERS, "lesion_threshold", "1")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # nothing shown
    seg, sr = results.segmentation, results.report
    for ds in (seg, sr):
        assert raw_text(ds, "StudyInstanceUID") == ODD_STUDY
        assert is_conformant_uid(raw_text(ds, "SeriesInstanceUID"))
        assert is_conformant_uid(raw_text(ds, "SOPInstanceUID"))
    [referenced] = seg.ReferencedSeriesSequence
    assert raw_text(referenced, "SeriesInstanceUID") == ODD_SERIES
    assert {
        raw_text(item, "ReferencedSOPInstanceUID") for item in referenced.ReferencedInstanceSequence
    } == {f"{ODD_SERIES}.{k:070d}" for k in range(10)}
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert raw_text(evidence, "StudyInstanceUID") == ODD_STUDY


def test_series_without_frame_of_reference_gets_a_derived_one(tmp_path: Path) -> None:
    def no_frame_of_reference(_: int, ds: Dataset) -> None:
        del ds.FrameOfReferenceUID

    write_ct_series(tmp_path, 10, edit=no_frame_of_reference)
    volume = load_series(tmp_path)
    sources = source_headers(volume.source_files)
    masks = _masks(10, 32)
    first = build_results(sources, *masks, BIOMARKERS, "lesion_threshold", "1")
    again = build_results(sources, *masks, BIOMARKERS, "lesion_unet", "2")
    assert "FrameOfReferenceUID" not in sources[0]  # the caller's headers are left alone
    derived = first.segmentation.FrameOfReferenceUID
    assert is_conformant_uid(derived) and again.segmentation.FrameOfReferenceUID == derived
    seg = hd.seg.Segmentation.from_dataset(roundtrip(first.segmentation))
    assert int(seg.get_volume(combine_segments=False).array[..., 1].sum()) == int(masks[1].sum())


def test_multiframe_source_gets_its_masks_frame_by_frame(enhanced_ct: Path) -> None:
    volume = load_series(enhanced_ct)
    sources = source_headers(volume.source_files)
    lung, lesion = _masks(24, 512)
    results = build_results(sources, lung, lesion, BIOMARKERS, "lesion_threshold", "1")
    seg = hd.seg.Segmentation.from_dataset(roundtrip(results.segmentation))
    order = stack_order(sources[0])  # volume slice k is source frame order[k]
    for k in (0, 7, 23):
        pixels = seg.get_pixels_by_source_frame(
            source_sop_instance_uid=sources[0].SOPInstanceUID,
            source_frame_numbers=[int(order[k]) + 1],
            segment_numbers=[2],
        )
        assert np.array_equal(pixels[0, ..., 0].astype(bool), lesion[k])


def test_highdicom_refusal_is_typed(tmp_path: Path) -> None:
    write_ct_series(tmp_path, 10)
    sources = source_headers(load_series(tmp_path).source_files)
    del sources[3].ImagePositionPatient  # no position: highdicom cannot place the frame
    with pytest.raises(InvalidVolume):
        build_results(sources, *_masks(10, 32), BIOMARKERS, "lesion_threshold", "1")


def test_report_codes_the_rsna_category_and_its_findings(tmp_path: Path) -> None:
    write_ct_series(tmp_path, 10)
    volume = load_series(tmp_path)
    sources = source_headers(volume.source_files)
    deciding = {"bilateral": 1.0, "peripheral_lesion_percent": 72.0, "lesion_count": 4.0}
    results = build_results(
        sources, *_masks(10, 32), BIOMARKERS, "lesion_unet", "1", rsna=("typical", deciding)
    )
    sr = hd.sr.Comprehensive3DSR.from_dataset(roundtrip(results.report))
    lesion_group = sr.content.get_volumetric_roi_measurement_groups()[1]
    (evaluation,) = lesion_group.get_qualitative_evaluations()
    assert (evaluation.name.value, evaluation.value.value) == ("RSNA-CAT", "RSNA-TYPICAL")
    assert evaluation.value.scheme_designator == "99CTRIAGE"
    values = {m.name.value: (m.value, m.unit.value) for m in lesion_group.get_measurements()}
    assert values["RSNA-F-PERIPH-PC"] == (pytest.approx(72.0), "%")
    assert values["RSNA-F-BILAT"] == (pytest.approx(1.0), "1")


def test_report_compares_with_the_prior_study(tmp_path: Path) -> None:
    write_ct_series(tmp_path, 10)
    sources = source_headers(load_series(tmp_path).source_files)
    prior = PriorComparison(
        study_uid="1.2.826.0.1.3680043.8.498.1",
        study_date=date(2020, 11, 2),
        lesion_percent=12.0,
        lesion_points=19.0,
        interval_days=3.0,
        severity_points=6.0,
    )
    results = build_results(sources, *_masks(10, 32), BIOMARKERS, "lesion_unet", "1", prior=prior)
    sr = hd.sr.Comprehensive3DSR.from_dataset(roundtrip(results.report))
    lesion_group = sr.content.get_volumetric_roi_measurement_groups()[1]
    values = {m.name.value: (m.value, m.unit.value) for m in lesion_group.get_measurements()}
    assert values["PRIOR-LESION-PCT"] == (pytest.approx(12.0), "%")
    assert values["LESION-PCT-CHG"] == (pytest.approx(19.0), "%")
    assert values["PRIOR-INTERVAL"] == (pytest.approx(3.0), "d")
    assert values["CTSS-CHG"] == (pytest.approx(6.0), "1")
    items = {item.ConceptNameCodeSequence[0].CodeValue: item for item in sr.ContentSequence}
    assert items["PRIOR-STUDY-DATE"].Date == "20201102"
    referenced = items["PRIOR-STUDY-UID"].UID
    assert referenced == prior.study_uid
    first = build_results(sources, *_masks(10, 32), BIOMARKERS, "lesion_unet", "1")
    first_items = {i.ConceptNameCodeSequence[0].CodeValue for i in first.report.ContentSequence}
    assert "PRIOR-STUDY-DATE" not in first_items  # a first CT has no comparison
