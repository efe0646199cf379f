"""Small CT series written on the fly for the ingestion tests (no data in the repository).

Slice k of a series holds ``truth_hu(k)``: a ramp whose value says which slice it is, so a test
can tell from the volume whether the reader sorted and rescaled the slices correctly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom.config import disable_value_validation
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

MATRIX = 32
GAP_MM = 2.5
STUDY_UID = "1.2.826.0.1.3680043.8.498.77"
Edit = Callable[[int, Dataset], None]


def truth_hu(k: int, matrix: int = MATRIX) -> np.ndarray:
    """Slice k of the truth."""
    base = np.arange(matrix * matrix, dtype=np.int32).reshape(matrix, matrix) % 200 - 900
    return base + 10 * k


def ct_slice(
    k: int,
    *,
    series_uid: str,
    study_uid: str = STUDY_UID,
    modality: str = "CT",
    matrix: int = MATRIX,
    patient_id: str = "PAT-ING-1",
) -> Dataset:
    """One axial CT image at z = k * GAP_MM, explicit VR little endian."""
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop_uid
    ds.Modality = modality
    ds.PatientID = patient_id
    ds.PatientName = "Ingest^Test"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = study_uid + ".1"
    ds.StudyDate, ds.StudyTime = "20200305", "145500"
    ds.SeriesNumber, ds.InstanceNumber = 2, k + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-20.0, -20.0, k * GAP_MM]
    ds.PixelSpacing = [0.8, 0.7]
    ds.SliceThickness = GAP_MM
    ds.Rows = ds.Columns = matrix
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = (truth_hu(k, matrix) + 1024).astype(np.uint16).tobytes()
    return ds


def write_ct_series(
    folder: Path,
    slices: int = 10,
    *,
    series_uid: str | None = None,
    edit: Edit | None = None,
    prefix: str = "img",
    **slice_options: object,
) -> str:
    """Write a series (files named in shuffled order); ``edit(k, ds)`` alters slice k first."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or str(generate_uid())
    names = np.random.default_rng(5).permutation(slices)
    for k in range(slices):
        ds = ct_slice(k, series_uid=series_uid, **slice_options)  # type: ignore[arg-type]
        with disable_value_validation():  # some edits write invalid values on purpose
            if edit is not None:
                edit(k, ds)
            ds.save_as(folder / f"{prefix}{names[k]:04d}.dcm", enforce_file_format=True)
    return series_uid
