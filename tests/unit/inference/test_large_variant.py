"""The served large variant ``lesion_unet_large``: one file that is its members' mean, served by
the compact study model's code, chosen by name in ``ctriage quantify`` (issue 12)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from inference import LARGE_MODEL, MODELS, NETWORKS, UNET_MODEL, logits_fn
from inference.segmentation import LARGE_MODEL_PATH, MODEL_PATH, OnnxSegmenter, segment_images
from streams.cli.quantify import EXIT_REJECTED
from streams.cli.quantify import app as quantify_app

pytestmark = pytest.mark.unit

FOLDER = LARGE_MODEL_PATH.parent.parent
MEMBER = FOLDER / "members" / "medseg_scratch_fold0.onnx"


@pytest.fixture(scope="module")
def large() -> OnnxSegmenter:
    return OnnxSegmenter(LARGE_MODEL_PATH)


def test_the_large_network_is_the_mean_of_its_members(large: OnnxSegmenter) -> None:
    """Lesion and lung logits: the mean of both members; consolidation: the member that has it."""
    slices = np.random.default_rng(3).random((3, 1, 256, 256), dtype=np.float32)
    compact, medseg = OnnxSegmenter(MODEL_PATH)(slices), OnnxSegmenter(MEMBER)(slices)
    got = large(slices)
    assert compact.shape[1] == 2 and medseg.shape[1] == 3 and got.shape == (3, 3, 256, 256)
    np.testing.assert_allclose(got[:, :2], (compact + medseg[:, :2]) / 2, atol=1e-4)
    np.testing.assert_allclose(got[:, 2], medseg[:, 2], atol=1e-4)
    assert not np.allclose(got[:, 0], compact[:, 0], atol=1e-2)  # the second member counts


def test_the_large_network_runs_on_crops(large: OnnxSegmenter) -> None:
    assert large.accepts_crops
    assert large(np.zeros((2, 1, 96, 160), dtype=np.float32)).shape == (2, 3, 96, 160)


def test_the_triton_folder_serves_the_ensemble_with_the_compact_models_code() -> None:
    config = (FOLDER / "config.pbtxt").read_text()
    assert re.search(r'^name: "lesion_unet_large"$', config, re.MULTILINE)
    network = re.search(r'key: "NETWORK_ONNX"\s+value: \{ string_value: "([^"]+)" \}', config)
    assert network is not None and FOLDER.parent / network.group(1) == LARGE_MODEL_PATH
    code = FOLDER / "1" / "model.py"
    assert code.is_symlink()
    assert code.resolve() == (FOLDER.parent / UNET_MODEL / "1" / "model.py").resolve()
    compact = (FOLDER.parent / UNET_MODEL / "config.pbtxt").read_text()
    outputs = re.findall(r'name: "([A-Z_]+)"', config)
    assert outputs == re.findall(r'name: "([A-Z_]+)"', compact)  # same interface
    assert (FOLDER / "MODEL_CARD.md").is_file()


def test_the_card_figures_are_the_committed_evaluation() -> None:
    evaluation = json.loads((FOLDER / "evaluation.json").read_text())
    card = (FOLDER / "MODEL_CARD.md").read_text()
    dice = evaluation["mean_per_slice_dice"]["infection"]
    auc = evaluation["covid_ct_md"]["P001"]["slice_auc_learned"]
    assert f"{dice:.3f}" in card and f"{auc:.3f}" in card
    held = set(evaluation["held_out_medseg_slices"])
    assert len(held) == 10  # fold 0: the MedSeg slices the MedSeg member never saw


def test_quantify_chooses_the_network_by_model_name() -> None:
    assert MODELS[0] == UNET_MODEL and LARGE_MODEL in MODELS
    assert NETWORKS[LARGE_MODEL] == LARGE_MODEL_PATH
    local = logits_fn(True, "unused:1", 1.0, LARGE_MODEL)
    assert isinstance(local, OnnxSegmenter) and local.accepts_crops
    with pytest.raises(ValueError, match="--local"):
        logits_fn(False, "127.0.0.1:1", 1.0, LARGE_MODEL)  # no slice model for it on Triton


def test_cli_images_on_the_large_variant(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "ct-lesions" / "medseg-train" / "multiclass" / "Imgs" / "3.jpg"
    (tmp_path / "3.jpg").write_bytes(source.read_bytes())
    root = typer.Typer()
    root.add_typer(quantify_app, name="quantify")

    @root.command()
    def other() -> None:
        """A sibling command."""

    out = tmp_path / "out"
    args = ["quantify", str(tmp_path / "3.jpg"), "--model", LARGE_MODEL, "--out", str(out)]
    on_triton = CliRunner().invoke(root, args)
    assert on_triton.exit_code == EXIT_REJECTED and "--local" in on_triton.output
    result = CliRunner().invoke(root, [*args, "--local"])
    assert result.exit_code == 0, result.output
    written = json.loads((out / "3.json").read_text())
    assert written["model"] == LARGE_MODEL
    with Image.open(source) as image:
        gray = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    expected = segment_images(gray[None], OnnxSegmenter(LARGE_MODEL_PATH)).biomarkers
    assert written["biomarkers"] == pytest.approx(expected.as_dict())
