from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from triage.cohort import CohortManifest, generate_cohort, load_outcomes
from triage.cohort.patients import sample_profile
from triage.cohort.phantom import PhantomGeometry, render_volume
from triage.cohort.writer import phantom_for

pytestmark = pytest.mark.unit

SEED, MATRIX, SLICES = 21, 40, 20


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CohortManifest]:
    out = tmp_path_factory.mktemp("dicom-cohort")
    return out, generate_cohort(out, n_patients=3, seed=SEED, matrix=MATRIX, slices=SLICES)


def _read_sorted(study_dir: Path) -> list[pydicom.Dataset]:
    datasets = [pydicom.dcmread(p) for p in study_dir.glob("*.dcm")]
    normal = np.cross(*np.reshape(np.asarray(datasets[0].ImageOrientationPatient, float), (2, 3)))
    return sorted(datasets, key=lambda ds: float(np.dot(normal, ds.ImagePositionPatient)))


def test_series_headers_and_geometry(cohort: tuple[Path, CohortManifest]) -> None:
    out, manifest = cohort
    geometry = PhantomGeometry(slices=SLICES, matrix=MATRIX)
    dz, dy, dx = geometry.spacing_mm
    x0, y0, _ = geometry.origin_mm
    for study in manifest.studies:
        files = sorted((out / study.study_dir).glob("*.dcm"))
        datasets = _read_sorted(out / study.study_dir)
        # File names do not follow slice order: readers must sort by geometry.
        by_name = [pydicom.dcmread(p).InstanceNumber for p in files]
        assert by_name != sorted(by_name)
        for k, ds in enumerate(datasets):
            assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
            assert ds.SOPClassUID == CTImageStorage == ds.file_meta.MediaStorageSOPClassUID
            assert ds.Modality == "CT"
            assert ds.StudyInstanceUID == study.study_uid
            assert ds.SeriesInstanceUID == study.series_uid
            assert ds.PatientID == study.patient_id
            assert str(ds.PatientName) and ds.PatientBirthDate  # identifying, on purpose
            assert ds.StudyDate == study.ct_time.strftime("%Y%m%d")
            assert ds.StudyTime == study.ct_time.strftime("%H%M%S")
            assert ds.InstanceNumber == k + 1
            assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
            assert [float(v) for v in ds.PixelSpacing] == pytest.approx([dy, dx])
            assert float(ds.SliceThickness) == pytest.approx(dz)
            position = [float(v) for v in ds.ImagePositionPatient]
            assert position == pytest.approx([x0, y0, geometry.z_mm(k)])
            assert (ds.Rows, ds.Columns) == (MATRIX, MATRIX)
        assert len({ds.SOPInstanceUID for ds in datasets}) == SLICES


def test_pixels_are_the_phantom_in_hu(cohort: tuple[Path, CohortManifest]) -> None:
    out, manifest = cohort
    geometry = PhantomGeometry(slices=SLICES, matrix=MATRIX)
    outcomes = load_outcomes(out)
    for index, (study, outcome) in enumerate(zip(manifest.studies, outcomes, strict=True)):
        datasets = _read_sorted(out / study.study_dir)
        hu = np.stack(
            [
                ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
                for ds in datasets
            ]
        )
        expected, labels, truth = render_volume(
            phantom_for(SEED, sample_profile(SEED, index), geometry)
        )
        np.testing.assert_array_equal(hu, expected)
        assert outcome.lesion_volume_ml_true == pytest.approx(truth.lesion_volume_ml, abs=0.01)
        assert outcome.lung_volume_ml_true == pytest.approx(truth.lung_volume_ml, abs=0.01)
        lesion_voxels = int(np.isin(labels, (6, 7)).sum())
        assert truth.lesion_volume_ml == pytest.approx(lesion_voxels * geometry.voxel_volume_ml)
