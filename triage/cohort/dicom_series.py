"""Write a phantom as a DICOM CT series (CT Image Storage, explicit VR little endian).

One file per slice, streamed: a slice is rendered, written and forgotten. Pixels are stored as
unsigned 12-bit values ``HU + 1024`` with RescaleSlope 1 and RescaleIntercept -1024, the usual
scanner convention. File names are a shuffled slice number so that readers must sort by
geometry. Headers carry identifying data on purpose (PatientID, PatientName, PatientBirthDate):
ingress must drop or pseudonymise them before anything goes downstream.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

from triage.cohort.patients import Stream, patient_rng
from triage.cohort.phantom import PhantomSpec, PhantomTruth, TruthCounter, iter_slices

logger = logging.getLogger(__name__)

RESCALE_INTERCEPT = -1024
RESCALE_SLOPE = 1


@dataclass(frozen=True)
class SeriesInfo:
    """Header data of one synthetic CT series (identifying fields included)."""

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    patient_id: str
    family_name: str
    given_name: str
    birth_date: date
    sex: str  # FHIR gender: "male" | "female"
    age_years: int
    ct_time: datetime
    hospital: str
    accession_number: str


def series_uids(seed: int, index: int) -> tuple[str, str, str]:
    """Deterministic (study, series, frame of reference) UIDs of patient ``index``."""
    return tuple(  # type: ignore[return-value]
        str(generate_uid(entropy_srcs=["ctriage-cohort", f"|seed={seed}|index={index}|{kind}"]))
        for kind in ("study", "series", "frame")
    )


def _base_dataset(spec: PhantomSpec, info: SeriesInfo) -> Dataset:
    g = spec.geometry
    dz, dy, dx = g.spacing_mm
    when = info.ct_time.astimezone(UTC)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = when.strftime("%H%M%S")
    ds.TimezoneOffsetFromUTC = "+0000"
    ds.AccessionNumber = info.accession_number
    ds.Modality = "CT"
    ds.Manufacturer = "ctriage synthetic phantom"
    ds.InstitutionName = info.hospital
    ds.StudyDescription = "CT CHEST WITHOUT CONTRAST (SYNTHETIC)"
    ds.SeriesDescription = "AXIAL LUNG (SYNTHETIC PHANTOM)"
    ds.PatientName = f"{info.family_name}^{info.given_name}"
    ds.PatientID = info.patient_id
    ds.PatientBirthDate = info.birth_date.strftime("%Y%m%d")
    ds.PatientSex = "M" if info.sex == "male" else "F"
    ds.PatientAge = f"{min(info.age_years, 999):03d}Y"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = f"{dz:.10g}"
    ds.SpacingBetweenSlices = f"{dz:.10g}"
    ds.KVP = "120"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = info.study_uid
    ds.SeriesInstanceUID = info.series_uid
    ds.StudyID = info.accession_number[-8:]
    ds.SeriesNumber = 1
    ds.FrameOfReferenceUID = info.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = g.matrix
    ds.Columns = g.matrix
    ds.PixelSpacing = [f"{dy:.10g}", f"{dx:.10g}"]  # row spacing (y), column spacing (x)
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = str(RESCALE_INTERCEPT)
    ds.RescaleSlope = str(RESCALE_SLOPE)
    ds.RescaleType = "HU"
    ds.WindowCenter = "-600"
    ds.WindowWidth = "1500"
    return ds


def write_series(spec: PhantomSpec, info: SeriesInfo, out_dir: Path) -> PhantomTruth:
    """Render ``spec`` slice by slice into ``out_dir`` (one ``<n>.dcm`` per slice).

    Returns the true lung / lesion volumes counted on the written slices.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    g = spec.geometry
    seed, index = spec.noise_seed
    names = patient_rng(seed, index, Stream.FILES).permutation(g.slices)
    ds = _base_dataset(spec, info)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    x0, y0, _ = g.origin_mm
    counter = TruthCounter(g)
    for k, hu, labels in iter_slices(spec):
        counter.add(labels)
        sop_uid = generate_uid(
            entropy_srcs=["ctriage-cohort", f"|seed={seed}|index={index}|slice={k}"]
        )
        z = g.z_mm(k)
        ds.SOPInstanceUID = sop_uid
        meta.MediaStorageSOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{x0:.10g}", f"{y0:.10g}", f"{z:.10g}"]
        ds.SliceLocation = f"{z:.10g}"
        # HU is clipped to [-1024, 3071] by the renderer: stored values fit 12 unsigned bits.
        ds.PixelData = (hu.astype(np.int32) - RESCALE_INTERCEPT).astype(np.uint16).tobytes()
        ds.save_as(out_dir / f"{int(names[k])}.dcm", enforce_file_format=True)
    truth = counter.truth()
    logger.debug("wrote %d slices of %s to %s", g.slices, info.study_uid, out_dir)
    return truth
