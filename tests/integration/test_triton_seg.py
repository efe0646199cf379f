"""The learned models on a real Triton server: lesion_unet and lesion_unet_large (study
models), lesion_unet_onnx (slices).

Uses the session ``triton_server`` fixture, which serves inference/model_repository (the
threshold model too) and fails loudly when the server cannot start.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from deploy.triton import TritonServer
from inference.client import LARGE_MODEL, TritonQuantifier, TritonSlices
from inference.exceptions import InferenceRejected
from inference.segmentation import INPUT_SIZE, LARGE_MODEL_PATH, OnnxSegmenter, segment_volume
from inference.volume import CtVolume, load_series
from streams.cli.quantify import app as quantify_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def p001(shared_data: Path) -> CtVolume:
    return load_series(shared_data / "dicom" / "covid-ct-md" / "P001")


def test_both_study_models_are_served(triton_server: TritonServer) -> None:
    for name in ("lesion_unet", "lesion_unet_large", "lesion_unet_onnx", "lesion_threshold"):
        assert TritonQuantifier(triton_server.http_url, model_name=name).is_ready(), name


def test_lesion_unet_matches_in_process_on_p001(
    triton_server: TritonServer, p001: CtVolume
) -> None:
    quantifier = TritonQuantifier(triton_server.http_url, model_name="lesion_unet", timeout_s=300)
    served = quantifier.quantify_study(p001.hu, p001.spacing_mm, masks=True)
    local = segment_volume(p001.hu, p001.spacing_mm, OnnxSegmenter())
    assert served.biomarkers.as_dict() == pytest.approx(local.biomarkers.as_dict(), rel=1e-3)
    assert served.regional.as_dict() == pytest.approx(local.regional.as_dict(), rel=1e-3, abs=0.5)
    assert served.classes is not None and served.classes.shape == p001.hu.shape
    assert served.lung is not None and (served.lung == local.lung).all()
    assert quantifier.quantify(p001) == served.biomarkers
    assert quantifier.model_version() == "1"
    # the stream worker's call: everything the model declares, masks on request only
    worker_view = quantifier.quantify_volume(p001)
    assert worker_view.biomarkers == served.biomarkers and worker_view.regional == served.regional
    assert worker_view.classes is None and worker_view.lung is None


def test_the_large_variant_serves_its_ensemble_as_in_process(
    triton_server: TritonServer, p001: CtVolume
) -> None:
    """Same code as lesion_unet, the two-network file: what --local computes, and not the
    compact model's numbers."""
    quantifier = TritonQuantifier(triton_server.http_url, model_name=LARGE_MODEL, timeout_s=300)
    served = quantifier.quantify_study(p001.hu, p001.spacing_mm, masks=True)
    local = segment_volume(p001.hu, p001.spacing_mm, OnnxSegmenter(LARGE_MODEL_PATH))
    assert served.biomarkers.as_dict() == pytest.approx(local.biomarkers.as_dict(), rel=1e-3)
    assert served.classes is not None and (served.classes > 0).sum() == local.lesion.sum()
    compact = TritonQuantifier(triton_server.http_url, model_name="lesion_unet", timeout_s=300)
    assert compact.quantify(p001).lesion_percent != pytest.approx(
        served.biomarkers.lesion_percent, rel=0.05
    )
    assert quantifier.model_version() == "1"


def test_worker_call_on_the_threshold_model_has_no_regional_or_masks(
    triton_server: TritonServer, p001: CtVolume
) -> None:
    quantifier = TritonQuantifier(triton_server.http_url, model_name="lesion_threshold")
    result = quantifier.quantify_volume(p001, masks=True)
    assert result.regional is None and result.classes is None and result.lung is None
    assert result.biomarkers == quantifier.quantify(p001)


def test_slice_model_batches_concurrent_requests(triton_server: TritonServer) -> None:
    slices = TritonSlices(triton_server.http_url)
    rng = np.random.default_rng(3)
    batches = [rng.random((n, 1, INPUT_SIZE, INPUT_SIZE), dtype=np.float32) for n in (1, 5, 16)]
    local = OnnxSegmenter()
    with ThreadPoolExecutor(max_workers=3) as pool:
        served = list(pool.map(slices, batches))
    for batch, logits in zip(batches, served, strict=True):
        np.testing.assert_allclose(logits, local(batch), atol=1e-3)


def test_lesion_unet_rejects_a_thin_volume(triton_server: TritonServer) -> None:
    quantifier = TritonQuantifier(triton_server.http_url, model_name="lesion_unet")
    with pytest.raises(InferenceRejected):
        quantifier.quantify_array(np.zeros((2, 16, 16), dtype=np.int16), (1.0, 1.0, 1.0))


def test_cli_images_and_series_on_triton(
    triton_server: TritonServer, shared_data: Path, tmp_path: Path
) -> None:
    root = typer.Typer()
    root.add_typer(quantify_app, name="quantify")

    @root.command()
    def other() -> None:
        """A sibling, so the root is a group as in streams.cli."""

    image = shared_data / "ct-lesions" / "medseg-train" / "binary" / "Imgs" / "10.jpg"
    url = ["--url", triton_server.http_url, "--timeout-s", "300"]
    result = CliRunner().invoke(root, ["quantify", str(image), *url, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "10.lesion.png") as mask, Image.open(image) as source:
        assert mask.size == source.size
    series = shared_data / "dicom" / "covid-ct-md" / "P001"
    result = CliRunner().invoke(root, ["quantify", str(series), *url, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "P001.json").read_text())
    assert written["model"] == "lesion_unet" and written["regional"]["bilateral"] in (0.0, 1.0)
    assert (tmp_path / "P001.seg.dcm").stat().st_size > 0
