"""``inference.quantify``: a series quantified in this process, its JSON, SEG and SR written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import write_ct_series
from pydicom.dataset import Dataset

from inference.biomarkers import quantify_threshold, threshold_masks
from inference.client import THRESHOLD_MODEL
from inference.phantom import chest_phantom
from inference.quantify import UNITS, image_files, quantify_series, write_series

pytestmark = pytest.mark.unit


@pytest.fixture()
def series(tmp_path: Path) -> Path:
    """A chest phantom with lesions stored as a DICOM CT series."""
    phantom = chest_phantom(shape=(40, 128, 128), spacing_mm=(3.5, 2.4, 2.4), seed=2)

    def fill(k: int, ds: Dataset) -> None:
        ds.PixelSpacing = [2.4, 2.4]
        ds.PixelData = (phantom.hu[k].astype(np.int32) + 1024).astype(np.uint16).tobytes()

    folder = tmp_path / "study" / "series"
    write_ct_series(folder, slices=40, edit=fill, matrix=128)
    return folder


def test_local_threshold_series_gives_the_threshold_biomarkers(series: Path) -> None:
    done = quantify_series(series, THRESHOLD_MODEL, "local", local=True, url="", timeout_s=1.0)
    volume = done.volume
    expected = quantify_threshold(volume.hu, volume.spacing_mm).as_dict()
    assert done.result["biomarkers"] == pytest.approx(expected)
    assert expected["lesion_volume_ml"] > 0  # the phantom's lesions are found
    assert done.result["model"] == THRESHOLD_MODEL and done.result["model_version"] is None
    assert set(done.result["timings_s"]) == {"load", "quantify"}
    assert set(done.result["biomarkers"]) <= set(UNITS)
    lung, lesion = threshold_masks(volume.hu, volume.spacing_mm)
    assert np.array_equal(done.lung, lung) and np.array_equal(done.lesion, lesion)


def test_write_series_writes_json_seg_and_sr(series: Path, tmp_path: Path) -> None:
    done = quantify_series(series, THRESHOLD_MODEL, "local", local=True, url="", timeout_s=1.0)
    out = tmp_path / "out"
    write_series(out, done)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["series.json", "series.seg.dcm", "series.sr.dcm"]
    assert json.loads((out / "series.json").read_text()) == json.loads(json.dumps(done.result))
    seg = pydicom.dcmread(out / "series.seg.dcm")
    sr = pydicom.dcmread(out / "series.sr.dcm")
    assert seg.Modality == "SEG" and sr.Modality == "SR"
    assert seg.StudyInstanceUID == sr.StudyInstanceUID == done.volume.study_uid
    assert "PAT-ING-1" not in (out / "series.json").read_text()  # no identifier in the JSON


def test_image_files_finds_images_only(tmp_path: Path) -> None:
    (tmp_path / "b.PNG").write_bytes(b"")
    (tmp_path / "a.jpg").write_bytes(b"")
    (tmp_path / "c.dcm").write_bytes(b"")
    assert image_files(tmp_path) == [tmp_path / "a.jpg", tmp_path / "b.PNG"]
    assert image_files(tmp_path / "c.dcm") is None
    assert image_files(tmp_path / "missing") is None
    assert image_files(tmp_path / "a.jpg") == [tmp_path / "a.jpg"]
