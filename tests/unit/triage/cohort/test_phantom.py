from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from inference.lungmask import lung_mask
from inference.segmentation import OnnxSegmenter, segment_volume
from inference.volume import load_series
from triage.cohort.anatomy import TissueLabel
from triage.cohort.patients import sample_profile
from triage.cohort.phantom import PhantomGeometry, render_volume, sample_phantom
from triage.cohort.texture import noise_sd_hu
from triage.cohort.writer import phantom_for

pytestmark = pytest.mark.unit

SMALL = PhantomGeometry(slices=32, matrix=64)
#: The geometry at which the learned model is in its range (pixels <= ~1.5 mm; see
#: docs/imaging-performance.md): 256 x 256 x 64, 1.41 x 1.41 x 5 mm.
READABLE = PhantomGeometry(slices=64, matrix=256)


def _local_sd(hu: np.ndarray) -> np.ndarray:
    """SD in 5 x 5 in-plane windows (the noise estimator used on the real series)."""
    f = hu.astype(np.float32)
    mean = ndimage.uniform_filter(f, size=(1, 5, 5))
    return np.sqrt(np.maximum(ndimage.uniform_filter(f * f, size=(1, 5, 5)) - mean**2, 0.0))


def _soft_tissue_noise(hu: np.ndarray, tissue: np.ndarray) -> float:
    mean = ndimage.uniform_filter(hu.astype(np.float32), size=(1, 5, 5))
    return float(np.median(_local_sd(hu)[tissue & (mean > 20) & (mean < 70)]))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks_a, ranks_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def test_tissues_have_realistic_hu() -> None:
    spec = sample_phantom(3, 0, SMALL, lesion_fraction=0.3, consolidation_share=0.5, obese=False)
    hu, labels, truth = render_volume(spec)
    assert hu.dtype == np.int16 and hu.shape == SMALL.shape

    def median(label: TissueLabel) -> float:
        return float(np.median(hu[labels == label]))

    assert median(TissueLabel.AIR) == pytest.approx(-1000, abs=15)
    assert median(TissueLabel.FAT) == pytest.approx(-100, abs=15)
    assert median(TissueLabel.SOFT_TISSUE) == pytest.approx(40, abs=15)
    assert median(TissueLabel.LUNG) == pytest.approx(-850, abs=40)
    assert median(TissueLabel.BONE) == pytest.approx(700, abs=15)
    assert -700 <= median(TissueLabel.GGO) <= -550
    # 5.6 x 5.6 x 10 mm voxels: much of a consolidation's label is its partial-volume rim
    assert -220 <= median(TissueLabel.CONSOLIDATION) <= 40
    assert 2500 < truth.lung_volume_ml < 6500
    assert truth.lesion_percent == pytest.approx(30, abs=8)
    assert truth.ggo_volume_ml > 0 and truth.consolidation_volume_ml > 0


def test_healthy_lungs_have_no_lesions() -> None:
    spec = sample_phantom(3, 1, SMALL, lesion_fraction=0.0, consolidation_share=0.5, obese=True)
    _, labels, truth = render_volume(spec)
    assert truth.lesion_volume_ml == 0.0
    assert not np.isin(labels, (TissueLabel.GGO, TissueLabel.CONSOLIDATION)).any()


def test_volumes_do_not_depend_on_the_matrix() -> None:
    coarse = sample_phantom(4, 2, SMALL, 0.2, 0.3, obese=False)
    fine_geometry = PhantomGeometry(slices=64, matrix=128)
    fine = sample_phantom(4, 2, fine_geometry, 0.2, 0.3, obese=False)
    _, _, coarse_truth = render_volume(coarse)
    _, _, fine_truth = render_volume(fine)
    assert coarse_truth.lung_volume_ml == pytest.approx(fine_truth.lung_volume_ml, rel=0.05)
    assert coarse_truth.lesion_volume_ml == pytest.approx(fine_truth.lesion_volume_ml, rel=0.1)


def test_lesions_are_peripheral_and_basal() -> None:
    spec = sample_phantom(5, 3, SMALL, lesion_fraction=0.15, consolidation_share=0.3, obese=False)
    _, labels, _ = render_volume(spec)
    lung = np.isin(labels, (TissueLabel.LUNG, TissueLabel.VESSEL, TissueLabel.GGO, 7))
    lesion = np.isin(labels, (TissueLabel.GGO, TissueLabel.CONSOLIDATION))
    z_lung, _, x_lung = np.nonzero(lung)
    z_lesion, _, x_lesion = np.nonzero(lesion)
    assert z_lesion.mean() < z_lung.mean()  # index 0 is the lung base
    centre = SMALL.matrix / 2
    lateral_lung = np.abs(x_lung - centre).mean()
    assert np.abs(x_lesion - centre).mean() > lateral_lung


def test_severity_drives_lesions_and_ventilation() -> None:
    profiles = [sample_profile(9, i) for i in range(40)]
    severity = np.array([p.severity for p in profiles])
    lesion_ml = np.array(
        [render_volume(phantom_for(9, p, SMALL))[2].lesion_volume_ml for p in profiles]
    )
    assert _spearman(severity, lesion_ml) > 0.8

    many = [sample_profile(9, i) for i in range(2000)]
    sev = np.array([p.severity for p in many])
    ventilated = np.array([p.outcome.ventilation_14d for p in many])
    icu = np.array([p.outcome.icu_admission for p in many])
    assert 0.1 < ventilated.mean() < 0.3
    assert sev[ventilated].mean() > sev[~ventilated].mean() + 0.2
    assert icu[ventilated].mean() > 0.9  # ICU admission is a superset-ish of ventilation
    assert np.corrcoef(sev, ventilated)[0, 1] > 0.4


def test_vitals_and_labs_follow_severity() -> None:
    many = [sample_profile(12, i) for i in range(1500)]
    sev = np.array([p.severity for p in many])

    def first(key: str) -> tuple[np.ndarray, np.ndarray]:
        pairs = [
            (p.severity, next(m.value for m in p.measurements if m.key == key))
            for p in many
            if any(m.key == key for m in p.measurements)
        ]
        arr = np.array(pairs)
        return arr[:, 0], arr[:, 1]

    assert _spearman(*first("spo2")) < -0.5
    assert _spearman(*first("respiratory_rate")) > 0.5
    assert _spearman(*first("crp")) > 0.5
    assert _spearman(*first("lymphocytes")) < -0.4
    with_labs = [any(m.key == "crp" for m in p.measurements) for p in many]
    assert 0.7 < np.mean(with_labs) < 0.95
    assert len(sev) == 1500


@pytest.mark.parametrize("name", ["P001", "normal001"])
def test_noise_and_parenchyma_match_the_real_series(shared_data: Path, name: str) -> None:
    """Noise and lung texture of the phantom against a real series, at the same voxel size."""
    volume = load_series(shared_data / "dicom" / "covid-ct-md" / name)
    z = volume.hu.shape[0] // 2 * 2
    n, rows, cols = z // 2, volume.hu.shape[1] // 2, volume.hu.shape[2] // 2
    # the real series as acquired, and block-averaged 2 x 2 x 2 (about 1.4 x 1.4 x 4 mm)
    blocks = volume.hu[:z].reshape(n, 2, rows, 2, cols, 2).mean(axis=(1, 3, 5))
    spacing = tuple(2 * s for s in volume.spacing_mm)
    everywhere = np.ones(blocks.shape, dtype=bool)
    for hu_real, voxel in ((volume.hu, volume.spacing_mm), (blocks, spacing)):
        real_noise = _soft_tissue_noise(hu_real, np.ones(hu_real.shape, dtype=bool))
        assert noise_sd_hu(voxel) == pytest.approx(real_noise, rel=0.1)

    geometry = PhantomGeometry(slices=int(320 / spacing[0]), matrix=int(360 / spacing[1]))
    spec = sample_phantom(6, 0, geometry, lesion_fraction=0.0, consolidation_share=0.0, obese=False)
    hu, labels, _ = render_volume(spec)
    phantom_noise = _soft_tissue_noise(hu, labels == TissueLabel.SOFT_TISSUE)
    assert phantom_noise == pytest.approx(_soft_tissue_noise(blocks, everywhere), rel=0.1)

    real_lung = lung_mask(volume.hu, volume.spacing_mm)
    real_lung = real_lung[:z].reshape(n, 2, rows, 2, cols, 2).all(axis=(1, 3, 5))
    real_parenchyma = blocks[real_lung & (blocks < -650)]
    parenchyma = hu[(labels == TissueLabel.LUNG) & (hu < -650)].astype(np.float64)
    assert parenchyma.mean() == pytest.approx(real_parenchyma.mean(), abs=40)
    assert parenchyma.std() == pytest.approx(real_parenchyma.std(), rel=0.25)


def test_lesions_look_like_ct() -> None:
    """Ground glass is textured with vessels through it; consolidation keeps air bronchograms."""
    spec = sample_phantom(3, 0, READABLE, lesion_fraction=0.3, consolidation_share=0.6, obese=False)
    hu, labels, truth = render_volume(spec)
    ggo, core = hu[labels == TissueLabel.GGO], hu[labels == TissueLabel.CONSOLIDATION]
    assert 40 < ggo.std() < 150  # patchy, not a flat blob plus noise
    assert (ggo > -150).mean() > 0.002  # vessels keep their density inside ground glass
    assert (core < -600).mean() > 0.002  # air bronchograms
    assert -700 <= np.median(ggo) <= -550 and -200 <= np.median(core) <= 0
    # borders fade: lung voxels next to a lesion are denser than lung far from it
    lesion = np.isin(labels, (TissueLabel.GGO, TissueLabel.CONSOLIDATION))
    near = ndimage.binary_dilation(lesion, iterations=2) & ~lesion & (labels == TissueLabel.LUNG)
    far = ~ndimage.binary_dilation(lesion, iterations=8) & (labels == TissueLabel.LUNG)
    assert hu[near].mean() > hu[far].mean() + 30
    assert truth.consolidation_volume_ml > 0.05 * truth.lesion_volume_ml


@pytest.fixture(scope="module")
def segmenter() -> OnnxSegmenter:
    return OnnxSegmenter(threads=1)


@pytest.mark.parametrize(("seed", "fraction"), [(1, 0.05), (2, 0.15), (3, 0.3), (4, 0.5)])
def test_learned_model_reads_the_true_lesion_volume(
    segmenter: OnnxSegmenter, seed: int, fraction: float
) -> None:
    """lesion_unet (in process) reads each phantom's lesion volume within +-25 % (SYNTHETIC)."""
    spec = sample_phantom(seed, 0, READABLE, fraction, consolidation_share=0.3, obese=False)
    hu, _, truth = render_volume(spec)
    read = segment_volume(hu, READABLE.spacing_mm, segmenter).biomarkers
    assert read.lesion_volume_ml == pytest.approx(truth.lesion_volume_ml, rel=0.25)
    assert read.lung_volume_ml == pytest.approx(truth.lung_volume_ml, rel=0.1)


def test_learned_model_reads_healthy_phantom_lungs_as_clear(segmenter: OnnxSegmenter) -> None:
    spec = sample_phantom(5, 0, READABLE, 0.0, consolidation_share=0.3, obese=True)
    hu, _, _ = render_volume(spec)
    assert segment_volume(hu, READABLE.spacing_mm, segmenter).biomarkers.lesion_percent < 0.5
