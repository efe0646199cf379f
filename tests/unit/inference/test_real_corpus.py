"""Every real CT within reach is quantified, or refused with a documented reason.

The corpus: the series in ``../shared/data/dicom/`` (COVID-CT-MD), variants of a real series
that reproduce what anonymisers and archives write (UUID UIDs, no Frame of Reference, a stray
object in the folder, no DICOM file header, Enhanced CT multi-frame, a volume without lungs), the
DICOM test files that pydicom ships (``pydicom.data``) and pynetdicom's. pylibjpeg, its plugins
and pyjpegls ship codec test streams but no DICOM file (checked below). pydicom-data (pydicom's
larger test set, a 34 MB wheel) is not a dependency: its outcomes, measured once, are in
docs/ingestion-reasons.md with every reason code.

The tables are the expected outcome of ``ctriage quantify`` (its core,
:func:`inference.quantify.quantify_series`) per file or folder: a change in ingestion shows here.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path

import pydicom.data
import pynetdicom
import pytest
from paths import REPO_ROOT
from pydicom import dcmread
from pydicom.config import disable_value_validation
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset

from inference.client import THRESHOLD_MODEL
from inference.exceptions import SeriesRejected, SeriesRejectionReason
from inference.headers import raw_text
from inference.quantify import quantify_series, write_series

pytestmark = pytest.mark.unit

R = SeriesRejectionReason
QUANTIFIED = "quantified"
PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"
PYNETDICOM_FILES = Path(pynetdicom.__file__).parent / "tests" / "dicom_files"

#: ../shared/data/dicom: every series folder found there must be listed.
SHARED_SERIES = {
    "covid-ct-md/P001": QUANTIFIED,  # COVID-19, JPEG Lossless, Siemens, 148 slices
    "covid-ct-md/normal001": QUANTIFIED,  # normal subject, 154 slices
}

#: Every CT image file of the pydicom and pynetdicom test sets (glob patterns), one file each
#: as the PATH given to ``ctriage quantify``. None of these sets holds a CT series of 8 slices.
CT_FILES = {
    "CT_small.dcm": R.TOO_FEW_SLICES,  # one 128x128 slice
    "J2K_pixelrep_mismatch.dcm": R.TOO_FEW_SLICES,  # one slice, JPEG 2000 lossless
    "693_J2KI.dcm": R.TOO_FEW_SLICES,  # one slice, JPEG 2000 (lossy), no Frame of Reference
    "dicomdirtests/77654033/CT2/*": R.TOO_FEW_SLICES,  # 16x16 slices
    "dicomdirtests/98892001/CT5N/*": R.TOO_FEW_SLICES,
    "dicomdirtests/98892001/CT2N/*": R.LOCALIZER_ONLY,  # scout images
    "dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM*": R.TOO_FEW_SLICES,  # no pixels
    "UN_sequence.dcm": R.TRUNCATED_FILE,  # file meta says CT image; no SOP Instance UID
    "pynetdicom/CTImageStorage.dcm": R.TOO_FEW_SLICES,
    "pynetdicom/CTImageStorage_bad_meta.dcm": R.TOO_FEW_SLICES,
}
#: The CT series folders of the test sets, each as one PATH.
CT_FOLDERS = {
    "dicomdirtests/77654033/CT2": R.TOO_FEW_SLICES,  # 4 slices
    "dicomdirtests/98892001/CT5N": R.TOO_FEW_SLICES,  # 5 slices
    "dicomdirtests/98892001/CT2N": R.LOCALIZER_ONLY,
    "dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000": R.NO_PIXEL_DATA,  # 31 headers only
    "dicomdirtests": R.NO_PIXEL_DATA,  # the tree (DICOMDIRs, CT, MR, CR): TINY_ALPHA is chosen
}
#: The other files of the test sets that are not refused as non_ct_modality.
NOT_DICOM_FILES = {
    "README.txt",
    "crayons.icc",
    "rtplan.dump",
    "rtstruct.dump",
    "test1.json",
    "test_PN.json",
    "zipMR.gz",
    "no_meta.dcm",  # CT_small without file meta, but starting one byte off: not a dataset
    # DICOM objects without a SOP Instance UID (directories, fragments): skipped, then nothing
    "meta_missing_tsyntax.dcm",
    "nested_priv_SQ.dcm",
    "no_meta_group_length.dcm",
    "priv_SQ.dcm",
    "empty_charset_LEI.dcm",
    "dicomdirtests/DICOMDIR*",
    "dicomdirtests/README.txt",
    "dicomdirtests/TINY_ALPHA/DICOMDIR",
    "dicomdirtests/TINY_ALPHA/README",
}
TRUNCATED_FILES = {"MR_truncated.dcm"}


def outcome(path: Path, out: Path | None = None) -> str:
    """``quantified`` (JSON, SEG and SR written under ``out``), or the rejection reason."""
    try:
        done = quantify_series(path, THRESHOLD_MODEL, "local", local=True, url="", timeout_s=1)
    except SeriesRejected as e:
        return e.reason.value
    if out is not None:
        write_series(out, done)
    return QUANTIFIED


def _name(file: Path) -> str:
    if file.is_relative_to(PYNETDICOM_FILES):
        return f"pynetdicom/{file.name}"
    return str(file.relative_to(PYDICOM_FILES))


def _expected(name: str) -> str:
    for table in (CT_FILES, CT_FOLDERS):
        for pattern, reason in table.items():
            if fnmatch.fnmatch(name, pattern):
                return reason.value
    if any(fnmatch.fnmatch(name, pattern) for pattern in NOT_DICOM_FILES):
        return R.NOT_DICOM.value
    if name in TRUNCATED_FILES:
        return R.TRUNCATED_FILE.value
    return R.NON_CT_MODALITY.value


def _test_files() -> list[Path]:
    files = [Path(f) for f in get_testdata_files() if Path(f).is_file()]
    return sorted(files) + sorted(PYNETDICOM_FILES.iterdir())


@pytest.mark.parametrize("name", sorted(SHARED_SERIES))
def test_shared_series_is_quantified_with_json_seg_and_sr(
    covid_ct_md: Path, name: str, tmp_path: Path
) -> None:
    folder = covid_ct_md.parent / name
    assert outcome(folder, tmp_path) == SHARED_SERIES[name]
    stem = folder.name
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{stem}.json",
        f"{stem}.seg.dcm",
        f"{stem}.sr.dcm",
    ]
    seg = dcmread(tmp_path / f"{stem}.seg.dcm", stop_before_pixels=True)
    first = dcmread(next(folder.iterdir()), stop_before_pixels=True)
    assert raw_text(seg, "StudyInstanceUID") == raw_text(first, "StudyInstanceUID")


def test_every_shared_series_is_in_the_table(covid_ct_md: Path) -> None:
    root = covid_ct_md.parent
    series = {
        str(folder.relative_to(root))
        for folder in root.rglob("*")
        if folder.is_dir() and any(f.is_file() and f.suffix == ".dcm" for f in folder.iterdir())
    }
    assert series == set(SHARED_SERIES)


def test_test_files_of_pydicom_and_pynetdicom(tmp_path: Path) -> None:
    """One table row per file; mismatches are listed together."""
    wrong = {}
    for file in _test_files():
        name = _name(file)
        got, expected = outcome(file), _expected(name)
        if got != expected:
            wrong[name] = (got, expected)
    assert wrong == {}, "file: (outcome, expected)"


@pytest.mark.parametrize("folder", sorted(CT_FOLDERS))
def test_ct_folders_of_pydicom(folder: str) -> None:
    assert outcome(PYDICOM_FILES / folder) == CT_FOLDERS[folder].value


def test_every_ct_file_of_the_test_sets_is_listed() -> None:
    """A CT file that a new pydicom or pynetdicom adds must get its own row in CT_FILES."""
    unlisted = []
    for file in _test_files():
        try:
            modality = raw_text(dcmread(file, stop_before_pixels=True, force=True), "Modality")
        except Exception:  # noqa: BLE001, S112 - whatever does not parse is no CT here
            continue
        name = _name(file)
        if modality == "CT" and not any(fnmatch.fnmatch(name, p) for p in CT_FILES):
            unlisted.append(name)
    assert unlisted == []


@pytest.mark.parametrize("package", ["pylibjpeg", "libjpeg", "openjpeg", "rle", "jpeg_ls"])
def test_codec_packages_ship_no_dicom_file(package: str) -> None:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin is not None, f"{package} is a dependency"
    root = Path(spec.origin).parent
    dicom = [f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in {".dcm", ".dicom"}]
    assert dicom == [], "add these files to the corpus tables"


# --- variants of a real series: what anonymisers and archives write -------------------------

UUID_STUDY = "896911bf-1143-4c8d-8f04-f3cd1a7f6204"  # as in the other COVID-CT-MD series


def _uuid_uids(slices: list[Dataset], folder: Path) -> None:
    for k, ds in enumerate(slices):
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            delattr(ds, keyword)  # a new element takes the validation mode in force
        del ds.file_meta.MediaStorageSOPInstanceUID
        with disable_value_validation():  # pydicom warns on non-conformant UIDs
            ds.StudyInstanceUID = UUID_STUDY
            ds.SeriesInstanceUID = "1.3.12.2.1107.5.1.4.0093005.0001"  # leading zeros
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{UUID_STUDY}-{k}"
            ds.save_as(folder / f"{k}.dcm", enforce_file_format=True)


def _no_frame_of_reference(slices: list[Dataset], folder: Path) -> None:
    for k, ds in enumerate(slices):
        del ds.FrameOfReferenceUID
        ds.save_as(folder / f"{k}.dcm", enforce_file_format=True)


def _stray_object(slices: list[Dataset], folder: Path) -> None:
    for k, ds in enumerate(slices):
        ds.save_as(folder / f"{k}.dcm", enforce_file_format=True)
    shutil.copy(str(get_testdata_file("DICOMDIR-nopatient")), folder / "INDEX.dcm")


def _no_file_header(slices: list[Dataset], folder: Path) -> None:
    for k, ds in enumerate(slices):
        del ds.file_meta
        ds.preamble = None
        ds.save_as(folder / f"{k}.dcm", implicit_vr=True, enforce_file_format=False)


def _upper_abdomen(slices: list[Dataset], folder: Path) -> None:
    for k, ds in enumerate(slices):
        ds.save_as(folder / f"{k}.dcm", enforce_file_format=True)


Variant = Callable[[list[Dataset], Path], None]
#: variant -> (its slab of normal001, how it is written, expected outcome)
REAL_VARIANTS: dict[str, tuple[str, Variant | None, str]] = {  # slab: chest or abdomen
    "uuid_and_leading_zero_uids": ("chest", _uuid_uids, QUANTIFIED),
    "no_frame_of_reference": ("chest", _no_frame_of_reference, QUANTIFIED),
    "stray_object_in_the_folder": ("chest", _stray_object, QUANTIFIED),
    "no_dicom_file_header": ("chest", _no_file_header, QUANTIFIED),
    "enhanced_ct_multiframe": ("chest", None, QUANTIFIED),  # the enhanced_ct fixture
    "upper_abdomen_no_lungs": ("abdomen", _upper_abdomen, R.NO_LUNG_FOUND.value),
}


@pytest.mark.parametrize("variant", sorted(REAL_VARIANTS))
def test_real_series_variants(
    variant: str,
    chest_slices: list[Dataset],
    abdomen_slices: list[Dataset],
    enhanced_ct: Path,
    tmp_path: Path,
) -> None:
    slab_name, write, expected = REAL_VARIANTS[variant]
    if write is None:
        folder = enhanced_ct
    else:
        slab = chest_slices if slab_name == "chest" else abdomen_slices
        folder = tmp_path / "series"
        folder.mkdir()
        write([copy.deepcopy(ds) for ds in slab], folder)
    out = tmp_path / "out"
    assert outcome(folder, out) == expected
    if expected == QUANTIFIED:
        seg = dcmread(out / f"{folder.name}.seg.dcm", stop_before_pixels=True)
        sr = dcmread(out / f"{folder.name}.sr.dcm", stop_before_pixels=True)
        study = raw_text(seg, "StudyInstanceUID")
        assert study == raw_text(sr, "StudyInstanceUID")
        if variant == "uuid_and_leading_zero_uids":
            assert study == UUID_STUDY


def test_tables_name_reasons_that_are_documented() -> None:
    doc = (REPO_ROOT / "docs" / "ingestion-reasons.md").read_text(encoding="utf-8")
    reasons = {r for table in (CT_FILES, CT_FOLDERS) for r in table.values()}
    reasons |= {R.NOT_DICOM, R.TRUNCATED_FILE, R.NON_CT_MODALITY, R.NO_LUNG_FOUND}
    assert all(f"`{reason.value}`" in doc for reason in reasons)
    assert all(f"`{reason.value}`" in doc for reason in SeriesRejectionReason)
