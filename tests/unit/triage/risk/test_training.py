"""Real-data training (Mexico + semi-synthetic imaging), artifacts, and the shipped models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from paths import RISK_MODELS

from triage.exceptions import ModelArtifactError, ModelArtifactReason
from triage.fhir.features import FEATURES
from triage.risk.card import OUTCOME_MODELS
from triage.risk.mexico import file_sha256
from triage.risk.model import RiskModel, card_path, load_card
from triage.risk.training import OPERATING_THRESHOLDS, train_mexico

pytestmark = pytest.mark.unit

MODELS = RISK_MODELS
POINT_KEYS = {
    "threshold",
    "sensitivity",
    "specificity",
    "ppv",
    "alerts_per_100",
    "tp",
    "fp",
    "fn",
    "tn",
}


@pytest.fixture(scope="module")
def mexico(shared_data: Path) -> Path:
    return shared_data / "clinical" / "mexico-ssa-2020-05-27"


@pytest.fixture(scope="module")
def trained(mexico: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A quick run: 8,000 patients subsampled, both splits, 50 bootstrap replicates."""
    out = tmp_path_factory.mktemp("models")
    return out, train_mexico(mexico, out, seed=5, n_boot=50, max_rows=8000)


def test_every_outcome_and_kind_is_written_and_loads(trained: tuple[Path, dict[str, Any]]) -> None:
    out, summary = trained
    for name in OUTCOME_MODELS:
        for artifact in (name, f"{name}_clinical"):
            model = RiskModel.load(out / f"{artifact}.ubj")
            assert model.calibration is not None
            assert model.card["version"] == model.version
    assert json.loads((out / "risk_evaluation.json").read_text()) == summary
    assert summary["training_data"]["counts"]["subsampled_to"] == 8000


def test_card_labels_real_and_semi_synthetic(
    trained: tuple[Path, dict[str, Any]], mexico: Path
) -> None:
    out, _ = trained
    fused, clinical = (
        load_card(out / "ventilation.ubj"),
        load_card(out / "ventilation_clinical.ubj"),
    )
    assert fused["target"] == clinical["target"] == "intubation"
    assert fused["metrics"]["label"].startswith("SEMI-SYNTHETIC")
    assert clinical["metrics"]["label"].startswith("REAL")
    assert fused["training_data"]["semi_synthetic_imaging"] is True
    assert clinical["training_data"]["semi_synthetic_imaging"] is False
    assert (
        "imaging_scheme" in fused["training_data"]
        and "imaging_scheme" not in clinical["training_data"]
    )
    assert fused["training_data"]["sha256"] == file_sha256(mexico / "20200527.csv.gz")
    assert [f["name"] for f in fused["features"]] == list(FEATURES)
    by_name = {f["name"]: f for f in fused["features"]}
    assert by_name["age_years"]["codes"][0]["code"] == "30525-0"  # LOINC
    assert by_name["has_diabetes"]["codes"][0]["code"] == "44054006"  # SNOMED CT
    assert by_name["lesion_percent"]["in_training_data"] is True
    assert by_name["spo2_percent"]["in_training_data"] is False
    assert not {f["name"]: f for f in clinical["features"]}["lesion_percent"]["in_training_data"]
    for card in (fused, clinical):
        assert [p["threshold"] for p in card["operating_points"]] == list(OPERATING_THRESHOLDS)
        assert all(set(p) == POINT_KEYS for p in card["operating_points"])
        by_split = card["metrics"]["by_split"]
        assert set(by_split) == {"random", "temporal"}
        assert set(by_split["random"]["baselines"]) == {
            "age_alone",
            "comorbidity_count",
            "logistic_clinical",
            "logistic_fused",
        }
    assert "real_clinical_model" in fused["metrics"]["by_split"]["random"]


def test_models_beat_the_simple_baselines(trained: tuple[Path, dict[str, Any]]) -> None:
    _, summary = trained
    for name, per_split in summary["outcomes"].items():
        result = per_split["random"]
        clinical, fused = result["clinical"], result["fused"]
        low, high = clinical["auc_ci95"]
        assert low < clinical["auc"] < high, name
        assert clinical["auc"] > result["baselines"]["age_alone"]["auc"] > 0.6, name
        assert clinical["auc"] > result["baselines"]["comorbidity_count"]["auc"], name
        # the semi-synthetic imaging carries signal beyond the clinical record
        assert fused["auc"] > clinical["auc"], name
        assert 0 <= fused["brier"] < 0.15 and 0 <= fused["ece"] < 0.05


def test_score_is_calibrated_and_explained(trained: tuple[Path, dict[str, Any]]) -> None:
    out, _ = trained
    model = RiskModel.load(out / "ventilation.ubj")
    severe = dict.fromkeys(FEATURES)
    severe.update(
        age_years=75.0,
        sex_male=1.0,
        has_diabetes=1.0,
        lung_volume_ml=4000.0,
        lesion_volume_ml=1800.0,
        lesion_percent=45.0,
        ggo_percent=30.0,
        consolidation_percent=15.0,
        well_aerated_percent=50.0,
    )
    mild = dict.fromkeys(FEATURES)
    mild.update(
        age_years=30.0,
        sex_male=0.0,
        has_diabetes=0.0,
        lung_volume_ml=4000.0,
        lesion_volume_ml=80.0,
        lesion_percent=2.0,
        ggo_percent=1.5,
        consolidation_percent=0.5,
        well_aerated_percent=93.0,
    )
    high, low = model.score(severe), model.score(mild)
    assert 0.0 <= low.probability < high.probability <= 1.0
    assert high.top_features[0].feature in {
        "lesion_percent",
        "well_aerated_percent",
        "lesion_volume_ml",
        "ggo_percent",
        "consolidation_percent",
        "age_years",
    }
    assert high.top_features[0].direction == "raises"
    row = np.array(
        [[np.nan if severe[f] is None else severe[f] for f in FEATURES]], dtype=np.float32
    )
    assert model.predict_proba(row)[0] == pytest.approx(high.probability, abs=1e-6)
    assert model.calibration is not None
    assert model.predict_proba(row)[0] == pytest.approx(
        float(model.calibration.apply(model.predict_raw(row))[0])
    )


def test_tampered_calibration_is_refused(
    trained: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, _ = trained
    copy = tmp_path / "ventilation.ubj"
    copy.write_bytes((out / "ventilation.ubj").read_bytes())
    card = load_card(out / "ventilation.ubj")
    card["calibration"]["y"] = [min(1.0, y * 1.5) for y in card["calibration"]["y"]]
    card_path(copy).write_text(json.dumps(card))
    with pytest.raises(ModelArtifactError) as info:
        RiskModel.load(copy)
    assert info.value.reason is ModelArtifactReason.VERSION_MISMATCH


def test_shipped_models_load_and_are_labelled() -> None:
    """The models in triage/models: every outcome, both kinds, checked against FEATURES."""
    for name in OUTCOME_MODELS:
        for artifact in (name, f"{name}_clinical"):
            model = RiskModel.load(MODELS / f"{artifact}.ubj")
            card = model.card
            assert card["training_data"]["synthetic"] is False
            assert card["training_data"]["counts"]["cohort"] > 30_000  # the full cohort
            assert card["metrics"]["auc"] > 0.75
            assert (
                "SEMI-SYNTHETIC" in card["operating_points_label"]
                or "REAL" in card["operating_points_label"]
            )
    primary = RiskModel.load(MODELS / "ventilation.ubj")
    assert primary.target == "intubation" and primary.card["kind"] == "fused"
