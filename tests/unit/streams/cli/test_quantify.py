"""``ctriage quantify`` as the root command mounts it: add_typer(app, name="quantify")."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import typer
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from typer.testing import CliRunner

from inference.biomarkers import Biomarkers, quantify_threshold
from inference.phantom import Phantom, chest_phantom
from streams.cli.quantify import EXIT_REJECTED, EXIT_TRITON
from streams.cli.quantify import app as quantify_app

pytestmark = pytest.mark.unit


def write_phantom_series(phantom: Phantom, folder: Path) -> None:
    """Store the phantom as an axial CT series (HU + 1024, unsigned, intercept -1024)."""
    folder.mkdir(parents=True, exist_ok=True)
    dz, dy, dx = phantom.spacing_mm
    study, series = generate_uid(), generate_uid()
    for k, plane in enumerate(phantom.hu):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID = "CT", "PHANTOM"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, k * dz]
        ds.PixelSpacing = [dy, dx]
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = (plane.astype(np.int32) + 1024).astype(np.uint16).tobytes()
        ds.save_as(folder / f"{(k * 7) % len(phantom.hu)}.dcm", enforce_file_format=True)


@pytest.fixture()
def root() -> typer.Typer:
    app = typer.Typer(no_args_is_help=True)
    app.add_typer(quantify_app, name="quantify")

    @app.command()
    def other() -> None:
        """A sibling command, so that the root is a group as in streams.cli."""

    return app


def test_local_quantify_writes_json(root: typer.Typer, tmp_path: Path) -> None:
    phantom = chest_phantom(shape=(48, 128, 128), spacing_mm=(3.5, 2.4, 2.4), seed=2)
    write_phantom_series(phantom, tmp_path / "series")
    out = tmp_path / "out" / "result.json"
    result = CliRunner().invoke(
        root,
        [
            "quantify",
            str(tmp_path / "series"),
            "--local",
            "--model",
            "lesion_threshold",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "lesion_percent" in result.output
    written = json.loads(out.read_text())
    expected = quantify_threshold(phantom.hu, phantom.spacing_mm).as_dict()
    assert written["biomarkers"] == pytest.approx(expected)
    assert written["method"] == "local"
    assert written["units"]["lung_volume_ml"] == "mL"
    assert set(written["biomarkers"]) == set(Biomarkers.names())
    assert "PHANTOM" not in out.read_text()  # no patient identifier in the output


def test_rejected_series_exits_2(root: typer.Typer, tmp_path: Path) -> None:
    (tmp_path / "junk.dcm").write_text("not dicom")
    result = CliRunner().invoke(root, ["quantify", str(tmp_path), "--local"])
    assert result.exit_code == EXIT_REJECTED
    assert "not_dicom" in result.output


def test_unreachable_triton_exits_3(root: typer.Typer, tmp_path: Path) -> None:
    phantom = chest_phantom(shape=(16, 128, 128), spacing_mm=(3.5, 2.4, 2.4), seed=2)
    write_phantom_series(phantom, tmp_path / "series")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = CliRunner().invoke(
        root, ["quantify", str(tmp_path / "series"), "--url", f"127.0.0.1:{port}"]
    )
    assert result.exit_code == EXIT_TRITON
    assert "TritonUnavailable" in result.output
