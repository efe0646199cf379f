from __future__ import annotations

import numpy as np
import pytest

from triage.cohort.anatomy import TissueLabel
from triage.cohort.patients import sample_profile
from triage.cohort.phantom import PhantomGeometry, render_volume, sample_phantom
from triage.cohort.writer import phantom_for

pytestmark = pytest.mark.unit

SMALL = PhantomGeometry(slices=32, matrix=64)


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
    assert -650 <= median(TissueLabel.GGO) <= -350
    assert -130 <= median(TissueLabel.CONSOLIDATION) <= 70
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
