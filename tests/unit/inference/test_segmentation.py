"""Learned lesion segmentation: preprocessing, regional biomarkers, the committed ONNX model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from inference.biomarkers import CONSOLIDATION_HU, check_volume
from inference.lungmask import close_and_fill, lung_mask
from inference.regional import RegionalBiomarkers, regional_biomarkers, zone_score
from inference.segmentation import (
    CROP_MULTIPLE,
    INPUT_SIZE,
    MODEL_PATH,
    LogitsFn,
    OnnxSegmenter,
    Segmentation,
    crop_window,
    hu_to_unit,
    lesion_classes,
    measure,
    segment_images,
    segment_slices,
    segment_volume,
    unit_to_hu,
)
from inference.volume import load_series
from streams.cli.quantify import app as quantify_app
from triage.cohort.phantom import PhantomGeometry, render_volume, sample_phantom

pytestmark = pytest.mark.unit


def read(path: Path, size: int | None = None) -> np.ndarray:
    with Image.open(path) as image:
        gray = image.convert("L")
        return np.asarray(gray.resize((size, size)) if size else gray)


@pytest.fixture(scope="module")
def segmenter() -> OnnxSegmenter:
    return OnnxSegmenter(MODEL_PATH, threads=1)


def test_window_round_trip() -> None:
    hu = np.array([-2000, -1350, -600, -300, 150, 900], dtype=np.int16)
    unit = hu_to_unit(hu)
    assert unit.min() == 0.0 and unit.max() == 1.0
    np.testing.assert_allclose(unit_to_hu(unit)[1:5], hu[1:5], atol=1e-3)


def test_classes_split_by_density() -> None:
    lesion = np.array([True, True, True, False])
    hu = np.array([-600, -300, 40, -600])
    assert lesion_classes(lesion, hu).tolist() == [1, 2, 2, 0]


@pytest.mark.parametrize(
    ("percent", "score"),
    [(0, 0), (0.4, 0), (0.5, 1), (5, 2), (24.9, 2), (25, 3), (60, 4), (100, 5)],
)
def test_zone_score(percent: float, score: int) -> None:
    assert zone_score(percent) == score


def test_regional_biomarkers_of_known_masks() -> None:
    lung = np.zeros((30, 64, 64), dtype=bool)
    lung[:, 8:56, 4:28] = True  # right lung (image left)
    lung[:, 8:56, 36:60] = True  # left lung
    lesion = np.zeros_like(lung)
    lesion[20:30, 8:56, 4:28] = True  # all of the right upper zone
    lesion[0:2, 30:34, 40:44] = True  # a speck in the left lower zone (0.28 %)
    hu = np.where(lesion, -500, -850).astype(np.int16)
    hu[0:2, 30:34, 40:44] = 0
    result = regional_biomarkers(hu, (2.0, 1.0, 1.0), lung, lesion)
    assert result.right_upper_zone_percent == pytest.approx(100.0)
    assert result.right_middle_zone_percent == 0.0
    assert 0 < result.left_lower_zone_percent < 5
    assert result.ct_severity_score == 5  # the speck is below the 0.5 % floor
    assert result.bilateral == 0.0
    assert result.lesion_count == 1.0  # the speck (0.064 mL) is below 0.5 mL
    assert result.lesion_hu_std > 0
    assert 0 < result.peripheral_lesion_percent <= 100
    assert regional_biomarkers(hu, (2.0, 1.0, 1.0), ~lung & lung, lesion) == RegionalBiomarkers()


def test_segment_slices_maps_back_to_the_input_size() -> None:
    def half_lesion(slices: np.ndarray) -> np.ndarray:
        logits = -np.ones((len(slices), 2, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
        logits[:, 0, :, : INPUT_SIZE // 2] = 1.0
        logits[:, 1] = 1.0
        return logits

    unit = np.full((3, 100, 60), 0.5, dtype=np.float32)
    lesion, lung = segment_slices(unit, half_lesion)
    assert lesion.shape == lung.shape == unit.shape
    assert lung.all()
    assert lesion[:, :, :28].all() and not lesion[:, :, 32:].any()
    seg = segment_images(unit, half_lesion)
    assert seg.biomarkers.lesion_percent == pytest.approx(50.0, abs=5)


def test_a_class_channel_decides_ground_glass_and_consolidation_on_images() -> None:
    """Three-channel models: channel 2 (consolidation given lesion) replaces the density rule."""

    def three_channels(slices: np.ndarray) -> np.ndarray:
        logits = -np.ones((len(slices), 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
        logits[:, 0, :, : INPUT_SIZE // 2] = 1.0  # lesion: left half
        logits[:, 1] = 1.0  # lung everywhere
        logits[:, 2, : INPUT_SIZE // 2] = 1.0  # consolidation: top half
        return logits

    # bright (dense by the rule) everywhere: only the class channel can make ground glass
    unit = np.full((2, 128, 128), 0.95, dtype=np.float32)
    seg = segment_images(unit, three_channels)
    assert set(np.unique(seg.classes[:, :60, :60])) == {2}  # lesion, top: consolidation
    assert set(np.unique(seg.classes[:, 68:, :60])) == {1}  # lesion, bottom: ground glass
    assert not seg.classes[:, :, 68:].any()  # no lesion
    assert seg.biomarkers.ggo_percent == pytest.approx(25.0, abs=3)
    assert seg.biomarkers.consolidation_percent == pytest.approx(25.0, abs=3)
    dense_rule = segment_images(unit, lambda s: three_channels(s)[:, :2])  # two channels
    assert dense_rule.biomarkers.ggo_percent == 0.0  # the density rule: all consolidation


def test_onnx_model_is_small_and_finds_lesions_on_held_out_medseg(
    segmenter: OnnxSegmenter, shared_data: Path
) -> None:
    """MedSeg slices were never used in training (see the model card)."""
    assert MODEL_PATH.stat().st_size < 10 * 2**20
    folder = shared_data / "ct-lesions" / "medseg-train" / "binary"
    names = ["3", "10", "25", "40"]
    images = np.stack([read(folder / "Imgs" / f"{n}.jpg", 256) for n in names]).astype(np.float32)
    truth = np.stack([read(folder / "GT" / f"{n}.png", 256) for n in names]) > 127
    lesion, lung = segment_slices(images / 255.0, segmenter)
    dice = 2 * (lesion & truth).sum() / (lesion.sum() + truth.sum())
    print(f"MedSeg 4-slice Dice {dice:.3f}")
    assert dice > 0.4
    assert lung.mean() > 0.2


def test_quantify_images_writes_masks_of_the_input_size(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "ct-lesions" / "medseg-train" / "binary" / "Imgs"
    images = tmp_path / "images"
    images.mkdir()
    for name in ("3.jpg", "10.jpg"):
        (images / name).write_bytes((source / name).read_bytes())
    root = typer.Typer()
    root.add_typer(quantify_app, name="quantify")

    @root.command()
    def other() -> None:
        """A sibling command."""

    out = tmp_path / "out"
    result = CliRunner().invoke(root, ["quantify", str(images), "--local", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for stem in ("3", "10"):
        shape = read(images / f"{stem}.jpg").shape
        lesion = read(out / f"{stem}.lesion.png")
        classes = read(out / f"{stem}.classes.png")
        assert lesion.shape == classes.shape == shape
        assert set(np.unique(lesion)) <= {0, 255}
        assert set(np.unique(classes)) <= {0, 1, 2}
        assert ((lesion > 0) == (classes > 0)).all()
        written = json.loads((out / f"{stem}.json").read_text())
        assert written["biomarkers"]["lesion_percent"] > 0
        assert "ct_severity_score" in written["regional"]


def whole_volume_reference(
    hu: np.ndarray, spacing_mm: tuple[float, float, float], logits_fn: LogitsFn
) -> Segmentation:
    """segment_volume as it was before the lung box: every step on the whole volume."""
    spacing = check_volume(hu, spacing_mm)
    lung = lung_mask(hu, spacing)
    if lung.any():
        lung = close_and_fill(lung, max(1, round(3.0 / min(spacing[1:]))))
    lesion, _ = segment_slices(hu_to_unit(hu), logits_fn)
    return measure(hu, spacing, lung, lesion & (hu <= CONSOLIDATION_HU[1]))


def assert_same_segmentation(fast: Segmentation, reference: Segmentation) -> None:
    """Stated tolerance: the window's linear map runs after the resize instead of before, so a
    voxel whose logit is within float rounding of 0 may flip: at most 1 voxel in 100,000."""
    assert (fast.lung == reference.lung).all()
    assert int((fast.classes != reference.classes).sum()) <= 1e-5 * reference.classes.size
    assert fast.biomarkers.as_dict() == pytest.approx(reference.biomarkers.as_dict(), rel=1e-4)
    assert fast.regional.as_dict() == pytest.approx(reference.regional.as_dict(), rel=1e-4)


def test_the_shipped_network_runs_on_crops(segmenter: OnnxSegmenter) -> None:
    """The committed model declares free height and width (inference/training/free_dims.py):
    a re-export that fixes them again would silently send whole slices through the network."""
    assert segmenter.accepts_crops
    logits = segmenter(np.zeros((2, 1, 96, 160), dtype=np.float32))
    assert logits.shape == (2, 2, 96, 160)


@pytest.mark.parametrize(
    ("first", "last", "scale", "margin", "expected"),
    [
        (100, 300, 0.5, 40, (8, 192)),  # 512 -> 256: lung 50..150 of the input, +-40, on 8s
        (0, 511, 0.5, 40, (0, 256)),  # clipped to the input
        (37, 90, 2.0, 8, (64, 192)),  # 128 -> 256: 74..182, +-8, widened to multiples of 8
    ],
)
def test_a_crop_covers_the_lung_with_context_on_the_pooling_grid(
    first: int, last: int, scale: float, margin: int, expected: tuple[int, int]
) -> None:
    present = np.zeros(512, dtype=bool)
    present[first : last + 1] = True
    window = crop_window(present, 0, scale, margin)
    assert (window.start, window.stop) == expected
    assert window.start % CROP_MULTIPLE == 0 and window.stop % CROP_MULTIPLE == 0
    assert crop_window(present[20:], 20, scale, margin) == window  # the offset is applied


def test_segment_volume_in_the_lung_box_equals_the_whole_volume_on_p001(
    segmenter: OnnxSegmenter, shared_data: Path
) -> None:
    """The fast path (lung box, only lung slices through the network, each batch of slices
    cropped to its lungs before the network) against the reference (whole slices)."""
    p001 = load_series(shared_data / "dicom" / "covid-ct-md" / "P001")
    fast = segment_volume(p001.hu, p001.spacing_mm, segmenter)
    assert fast.classes.shape == p001.hu.shape and fast.biomarkers.lesion_volume_ml > 50
    assert_same_segmentation(fast, whole_volume_reference(p001.hu, p001.spacing_mm, segmenter))
    # slabs and network batches in threads (3: uneven z ranges) give exactly the same study
    parallel = segment_volume(p001.hu, p001.spacing_mm, segmenter, threads=3)
    assert (parallel.lung == fast.lung).all() and (parallel.classes == fast.classes).all()
    assert parallel.biomarkers == fast.biomarkers and parallel.regional == fast.regional


@pytest.mark.parametrize("matrix", [128, 200])  # 2x upsampling to the network, and any factor
def test_segment_volume_in_the_lung_box_at_other_matrices(
    segmenter: OnnxSegmenter, matrix: int
) -> None:
    geometry = PhantomGeometry(slices=24, matrix=matrix)
    hu, _, _ = render_volume(sample_phantom(8, 0, geometry, 0.2, 0.3, obese=False))
    fast = segment_volume(hu, geometry.spacing_mm, segmenter)
    assert fast.biomarkers.lesion_volume_ml > 0
    assert_same_segmentation(fast, whole_volume_reference(hu, geometry.spacing_mm, segmenter))


def test_segment_volume_without_lung_is_empty(segmenter: OnnxSegmenter) -> None:
    body = np.full((6, 64, 64), 40, dtype=np.int16)
    seg = segment_volume(body, (2.0, 1.0, 1.0), segmenter)
    assert seg.classes.shape == body.shape and not seg.lung.any() and not seg.classes.any()
    assert seg.biomarkers.lung_volume_ml == 0.0
