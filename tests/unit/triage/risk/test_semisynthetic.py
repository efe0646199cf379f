"""Semi-synthetic imaging draw: consistent biomarkers, seeded, literature odds ratios reached."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from triage.fhir.features import IMAGING_FEATURES
from triage.risk import semisynthetic
from triage.risk.mexico import load_cohort
from triage.risk.semisynthetic import (
    SCHEME,
    TARGET_OR_LESION,
    TARGET_OR_WELL_AERATED,
    achieved_odds_ratios,
    draw_biomarkers,
)

pytestmark = pytest.mark.unit


def population(n: int, seed: int) -> dict[str, np.ndarray]:
    """Outcome mix like the Mexico cohort: pneumonia 30 %, outcomes mostly with pneumonia."""
    rng = np.random.default_rng(seed)
    pneumonia = (rng.random(n) < 0.3).astype(float)
    death = (rng.random(n) < np.where(pneumonia == 1, 0.35, 0.04)).astype(float)
    icu = (rng.random(n) < np.where(pneumonia == 1, 0.10, 0.01)).astype(float)
    intubation = (rng.random(n) < np.where(pneumonia == 1, 0.12, 0.01)).astype(float)
    intubation[:20] = np.nan  # unknown outcome
    sex = (rng.random(n) < 0.55).astype(float)
    sex[:10] = np.nan
    return {
        "pneumonia": pneumonia,
        "intubation": intubation,
        "icu": icu,
        "death": death,
        "sex": sex,
    }


def test_biomarkers_are_consistent_and_seeded() -> None:
    p = population(5000, 0)
    args = (p["pneumonia"], p["intubation"], p["icu"], p["death"], p["sex"])
    frame = draw_biomarkers(*args, seed=7)
    assert tuple(frame.columns) == IMAGING_FEATURES
    assert frame.notna().all().all()
    assert frame["lesion_percent"].between(0, 100).all()
    assert (frame["well_aerated_percent"] + frame["lesion_percent"] <= 100 + 1e-9).all()
    assert np.allclose(
        frame["ggo_percent"] + frame["consolidation_percent"], frame["lesion_percent"]
    )
    assert np.allclose(
        frame["lesion_volume_ml"], frame["lung_volume_ml"] * frame["lesion_percent"] / 100
    )
    assert frame["lung_volume_ml"].between(1500, 8000).all()
    assert draw_biomarkers(*args, seed=7).equals(frame)
    assert not draw_biomarkers(*args, seed=8).equals(frame)
    # pneumonia and bad outcomes shift the lesion burden up
    lesion = frame["lesion_percent"].to_numpy()
    assert np.median(lesion[p["pneumonia"] == 1]) > 3 * np.median(lesion[p["pneumonia"] == 0])


def test_literature_odds_ratios_are_reached_on_the_real_cohort(shared_data: Path) -> None:
    """On the REAL Mexico outcomes the draw lands near the targets of the scheme."""
    cohort = load_cohort(shared_data / "clinical" / "mexico-ssa-2020-05-27")
    f, o = cohort.features, cohort.outcomes
    outcomes = (o["intubation"].to_numpy(), o["icu"].to_numpy(), o["death"].to_numpy())
    pneumonia = f["has_pneumonia"].to_numpy()
    frame = draw_biomarkers(pneumonia, *outcomes, f["sex_male"].to_numpy(), seed=2020)
    odds = achieved_odds_ratios(frame, pneumonia, *outcomes)
    well_aerated = odds["well_aerated_below_72_vs_icu_or_death"]
    lesion = odds["lesion_above_23_vs_intubation"]
    assert well_aerated is not None and lesion is not None
    assert TARGET_OR_WELL_AERATED * 0.75 < well_aerated < TARGET_OR_WELL_AERATED * 1.33
    assert TARGET_OR_LESION * 0.75 < lesion < TARGET_OR_LESION * 1.33
    assert "Colombi" in str(SCHEME["targets"]) and "Lanza" in str(SCHEME["targets"])


def test_measurement_error_constants_are_the_lesion_models_own(repo_root: Path) -> None:
    evaluation = json.loads(
        (
            repo_root / "inference" / "model_repository" / "lesion_unet_onnx" / "evaluation.json"
        ).read_text()
    )
    held_out = evaluation["medseg_heldout"]
    assert (
        pytest.approx(held_out["infection"]["pooled"]["sensitivity"], abs=1e-4)
        == semisynthetic.LESION_SENSITIVITY
    )
    assert (
        pytest.approx(held_out["consolidation"]["pooled"]["sensitivity"], abs=1e-4)
        == semisynthetic.CONSOLIDATION_SENSITIVITY
    )
    normal = evaluation["covid_ct_md"]["normal001"]["biomarkers"]["lesion_percent"]
    assert pytest.approx(normal, abs=1e-3) == semisynthetic.FALSE_POSITIVE_PERCENT


def test_the_fused_model_sees_what_the_lesion_model_measures() -> None:
    rng = np.random.default_rng(2)
    n = 20_000
    truth = draw_biomarkers(
        (rng.random(n) < 0.5).astype(float),
        (rng.random(n) < 0.1).astype(float),
        (rng.random(n) < 0.1).astype(float),
        (rng.random(n) < 0.1).astype(float),
        (rng.random(n) < 0.5).astype(float),
        seed=3,
    )
    measured = semisynthetic.measured_by_lesion_model(truth, seed=4)
    pd.testing.assert_frame_equal(measured, semisynthetic.measured_by_lesion_model(truth, seed=4))
    lesion_ratio = measured["lesion_percent"].sum() / truth["lesion_percent"].sum()
    assert 0.45 < lesion_ratio < 0.65  # about half the lesion is missed
    assert (measured["consolidation_percent"] < 0.1 * truth["consolidation_percent"] + 1e-9).all()
    parts = measured["ggo_percent"] + measured["consolidation_percent"]
    np.testing.assert_allclose(parts, measured["lesion_percent"], rtol=1e-9)
    assert (measured["well_aerated_percent"] >= truth["well_aerated_percent"] - 1e-9).mean() > 0.9
    assert (measured["lesion_percent"] > 0).all()  # the false-positive floor
