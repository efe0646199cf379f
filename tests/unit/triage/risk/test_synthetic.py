"""Risk model: training on a tiny seeded cohort, artifact checks, scoring, and the CLI."""

from __future__ import annotations

import csv
import json
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from streams.cli.root import app
from streams.imaging import dicom_biomarkers
from triage.exceptions import (
    ModelArtifactError,
    ModelArtifactReason,
    TrainingDataError,
    TrainingDataReason,
)
from triage.fhir.features import FEATURES, IMAGING_FEATURES
from triage.risk.evaluation import calibration_error, roc_auc, stratified_split
from triage.risk.model import OPERATING_THRESHOLDS, RiskModel, card_path
from triage.risk.synthetic import build_training_table, train_from_cohort

pytestmark = pytest.mark.unit

N_PATIENTS = 160
START = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
STAND_IN = "stand_in_biomarkers.json"


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def write_tiny_cohort(root: Path, n: int = N_PATIENTS, seed: int = 11) -> Path:
    """A cohort in the contract's layout; study folders hold stand-in biomarkers, not DICOM."""
    rng = np.random.default_rng(seed)
    (root / "fhir").mkdir(parents=True)
    studies, outcomes = [], []
    for i in range(n):
        pid, uid = f"P{i:04d}", f"1.2.826.0.1.{i}"
        age = int(rng.integers(30, 90))
        diabetes = bool(rng.random() < 0.3)
        severity = _sigmoid(-1.0 + 0.04 * (age - 60) + 0.8 * diabetes + rng.normal(0, 1))
        ventilated = int(rng.random() < _sigmoid(-4 + 7 * severity))
        ct_time = START + timedelta(hours=i)
        entries: list[dict[str, Any]] = [
            {
                "fullUrl": f"urn:uuid:{pid}",
                "resource": {
                    "resourceType": "Patient",
                    "id": pid,
                    "name": [{"family": "Doe"}],
                    "birthDate": f"{2024 - age}-05-01",
                    "gender": "male" if i % 2 else "female",
                },
            }
        ]
        if diabetes:
            entries.append(
                {
                    "resource": {
                        "resourceType": "Condition",
                        "id": f"c{i}",
                        "subject": {"reference": f"Patient/{pid}"},
                        "clinicalStatus": {"coding": [{"code": "active"}]},
                        "code": {
                            "coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]
                        },
                    }
                }
            )
        spo2 = round(min(100.0, 97 - 12 * severity + rng.normal(0, 1)))
        entries.append(
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": f"o{i}",
                    "status": "final",
                    "subject": {"reference": f"Patient/{pid}"},
                    "code": {"coding": [{"system": "http://loinc.org", "code": "59408-5"}]},
                    "effectiveDateTime": (ct_time - timedelta(hours=3)).isoformat(),
                    "valueQuantity": {
                        "value": spo2,
                        "unit": "%",
                        "system": "http://unitsofmeasure.org",
                        "code": "%",
                    },
                }
            }
        )
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
        (root / "fhir" / f"{pid}.json").write_text(json.dumps(bundle))
        study_dir = root / "dicom" / uid
        study_dir.mkdir(parents=True)
        lung = float(rng.normal(4500, 500))
        lesion_pct = float(max(0.0, 45 * severity + rng.normal(0, 4)))
        bio = {
            "lung_volume_ml": lung,
            "lesion_volume_ml": lung * lesion_pct / 100,
            "lesion_percent": lesion_pct,
            "ggo_percent": lesion_pct * 0.7,
            "consolidation_percent": lesion_pct * 0.3,
            "well_aerated_percent": 100 - lesion_pct,
        }
        (study_dir / STAND_IN).write_text(json.dumps(bio))
        studies.append(
            {
                "patient_id": pid,
                "study_uid": uid,
                "series_uid": uid + ".1",
                "study_dir": f"dicom/{uid}",
                "fhir_bundle": f"fhir/{pid}.json",
                "ct_time": ct_time.isoformat(),
                "offset_s": float(i),
            }
        )
        outcomes.append(
            {
                "patient_id": pid,
                "study_uid": uid,
                "severity": f"{severity:.4f}",
                "ventilation_14d": ventilated,
                "icu_admission": ventilated,
                "icu_los_days": "",
                "lesion_volume_ml_true": bio["lesion_volume_ml"],
                "lung_volume_ml_true": lung,
            }
        )
    manifest = {
        "seed": seed,
        "n_patients": n,
        "hospital": "test-hospital",
        "start_time": START.isoformat(),
        "census_bundle": "fhir/census.json",
        "studies": studies,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    with (root / "outcomes.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(outcomes[0]))
        writer.writeheader()
        writer.writerows(outcomes)
    return root


def stand_in_biomarkers(study_dir: Path) -> dict[str, float]:
    data: dict[str, float] = json.loads((study_dir / STAND_IN).read_text())
    return data


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def trained(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("model") / "ventilation.ubj"
    card = train_from_cohort(
        cohort, out, seed=3, biomarker_fn=stand_in_biomarkers, biomarker_source=STAND_IN
    )
    return out, card


def test_training_beats_chance_and_card_is_complete(trained: tuple[Path, dict[str, Any]]) -> None:
    out, card = trained
    assert out.is_file() and card_path(out).is_file()
    assert out.read_bytes()[:1] == b"{"  # UBJSON object, not a pickle
    assert card["metrics"]["auc"] > 0.5
    assert "SYNTHETIC" in card["metrics"]["label"]
    assert card["training_data"]["synthetic"] is True
    assert [f["name"] for f in card["features"]] == list(FEATURES)
    assert all(f["unit"] for f in card["features"])
    assert [p["threshold"] for p in card["operating_points"]] == list(OPERATING_THRESHOLDS)
    point = card["operating_points"][0]
    assert set(point) >= {"sensitivity", "specificity", "ppv", "alerts_per_100"}
    assert card["metrics"]["at_policy_thresholds"][0]["threshold"] == 0.5
    assert json.loads(card_path(out).read_text()) == card


def test_training_is_reproducible(cohort: Path, tmp_path: Path, trained: tuple[Path, Any]) -> None:
    card = train_from_cohort(
        cohort,
        tmp_path / "again.ubj",
        seed=3,
        biomarker_fn=stand_in_biomarkers,
        biomarker_source=STAND_IN,
    )
    assert card["version"] == trained[1]["version"]


def test_load_and_score_with_contributions(trained: tuple[Path, dict[str, Any]]) -> None:
    out, card = trained
    model = RiskModel.load(out)
    assert model.version == card["version"]
    sick = dict.fromkeys(FEATURES)
    sick.update(lesion_percent=45.0, spo2_percent=84.0, age_years=80.0, has_diabetes=1.0)
    well = dict.fromkeys(FEATURES)
    well.update(lesion_percent=1.0, spo2_percent=98.0, age_years=35.0, has_diabetes=0.0)
    high, low = model.score(sick), model.score(well)
    assert 0.0 <= low.probability < high.probability <= 1.0
    assert 0 < len(high.top_features) <= 5
    top = high.top_features[0]
    assert top.direction == ("raises" if top.contribution > 0 else "lowers")
    for contribution in high.top_features:  # a missing input is reported as None, not imputed
        assert contribution.value == sick[contribution.feature]
    assert json.loads(json.dumps(high.top_features_json()))[0]["feature"] == top.feature
    # Contributions add up to the margin: the probability is reproducible from them.
    assert model.predict_proba(
        np.array([[np.nan if sick[f] is None else sick[f] for f in FEATURES]], dtype=np.float32)
    )[0] == pytest.approx(high.probability, abs=1e-5)


def test_scoring_latency_is_about_a_millisecond(trained: tuple[Path, dict[str, Any]]) -> None:
    model = RiskModel.load(trained[0])
    feats = dict.fromkeys(FEATURES, 1.0)
    model.score(feats)
    n = 200
    started = time.perf_counter()
    for _ in range(n):
        model.score(feats)
    per_call_ms = (time.perf_counter() - started) / n * 1000
    print(f"scoring latency: {per_call_ms:.3f} ms per patient")
    assert per_call_ms < 50  # generous bound: a sanity check, not a benchmark


def test_load_refuses_a_card_with_other_features(
    trained: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, card = trained
    copy_model = tmp_path / "m.ubj"
    copy_model.write_bytes(out.read_bytes())
    other = {**card, "features": card["features"][:-1]}
    card_path(copy_model).write_text(json.dumps(other))
    with pytest.raises(ModelArtifactError) as info:
        RiskModel.load(copy_model)
    assert info.value.reason is ModelArtifactReason.FEATURE_MISMATCH


def test_load_refuses_when_code_features_differ(
    trained: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("triage.risk.model.FEATURES", (*FEATURES, "new_feature"))
    with pytest.raises(ModelArtifactError) as info:
        RiskModel.load(trained[0])
    assert info.value.reason is ModelArtifactReason.FEATURE_MISMATCH


def test_load_refuses_tampered_model_and_missing_card(
    trained: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, card = trained
    tampered = tmp_path / "t.ubj"
    tampered.write_bytes(out.read_bytes() + b" ")
    card_path(tampered).write_text(json.dumps(card))
    with pytest.raises(ModelArtifactError) as info:
        RiskModel.load(tampered)
    assert info.value.reason is ModelArtifactReason.VERSION_MISMATCH
    lonely = tmp_path / "lonely.ubj"
    lonely.write_bytes(out.read_bytes())
    with pytest.raises(ModelArtifactError) as info:
        RiskModel.load(lonely)
    assert info.value.reason is ModelArtifactReason.MISSING_CARD


def test_too_small_or_single_class_cohorts_refused(tmp_path: Path) -> None:
    small = write_tiny_cohort(tmp_path / "small", n=10)
    with pytest.raises(TrainingDataError) as info:
        train_from_cohort(
            small,
            tmp_path / "m.ubj",
            0,
            biomarker_fn=stand_in_biomarkers,
            biomarker_source=STAND_IN,
        )
    assert info.value.reason is TrainingDataReason.TOO_FEW_STUDIES
    with pytest.raises(TrainingDataError) as info:
        train_from_cohort(
            tmp_path / "nowhere",
            tmp_path / "m.ubj",
            0,
            biomarker_fn=dicom_biomarkers,
            biomarker_source="dicom",
        )
    assert info.value.reason is TrainingDataReason.MISSING_FILE


def test_metric_helpers_by_hand() -> None:
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(labels, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(labels, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    assert roc_auc(np.array([1, 1]), np.array([0.2, 0.3])) is None
    assert calibration_error(labels, np.array([0.0, 0.0, 1.0, 1.0])) == pytest.approx(0.0)
    assert calibration_error(labels, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.0)
    assert calibration_error(labels, np.array([1.0, 1.0, 0.0, 0.0])) == pytest.approx(1.0)
    many = np.array([0] * 80 + [1] * 20)
    train, test = stratified_split(many, 0.25, np.random.default_rng(0))
    assert len(test) == 25 and many[test].sum() == 5
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 100


def test_dicom_biomarkers_composes_inference(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The DICOM path: load_series -> quantify_threshold, here on a small stand-in volume."""
    import inference.biomarkers as biomarkers_mod
    import inference.volume as volume_mod

    hu = np.full((8, 32, 32), -850, dtype=np.int16)
    hu[:, :4, :] = 40  # chest wall
    hu[2:5, 10:20, 10:20] = -300  # ground glass
    stand_in = volume_mod.CtVolume(
        hu=hu,
        spacing_mm=(2.0, 1.0, 1.0),
        study_uid="1.2.3",
        series_uid="1.2.3.1",
        patient_id="x",
        study_datetime=None,
    )
    seen: list[Path] = []

    def fake_load_series(path: Path, *args: Any, **kwargs: Any) -> Any:
        seen.append(path)
        return stand_in

    monkeypatch.setattr("streams.imaging.load_series", fake_load_series)
    bio = dicom_biomarkers(tmp_path)
    assert seen == [tmp_path]
    expected = biomarkers_mod.quantify_threshold(hu, (2.0, 1.0, 1.0)).as_dict()
    assert bio == expected
    assert set(IMAGING_FEATURES) <= set(bio)


def test_cli_train_and_thresholds_show(
    cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("streams.cli.risk.dicom_biomarkers", stand_in_biomarkers)
    # `thresholds show` also reads the levels in force: Kafka is down here (nothing on port 1)
    monkeypatch.setenv("CTRIAGE_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("CTRIAGE_ADMIN__READ_TIMEOUT_S", "1")
    monkeypatch.setenv("CTRIAGE_STORE__URL", f"sqlite:///{tmp_path / 'none' / 'store.sqlite'}")
    runner = CliRunner()
    out = tmp_path / "cli.ubj"
    result = runner.invoke(
        app, ["train", "--cohort", str(cohort), "--out", str(out), "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output and "auc" in result.output
    result = runner.invoke(app, ["thresholds", "show", "--model", str(out)])
    assert result.exit_code == 0, result.output
    assert "alerts / 100" in result.output and "0.9" in result.output
    result = runner.invoke(app, ["thresholds", "show", "--model", str(tmp_path / "none.ubj")])
    assert result.exit_code == 2
    assert "missing_file" in result.output


@pytest.fixture(scope="module")
def generated_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small cohort from the project's own generator (FHIR bundles, DICOM phantoms, census)."""
    from triage.cohort import generate_cohort

    root = tmp_path_factory.mktemp("generated")
    generate_cohort(root, n_patients=12, seed=1, matrix=64, slices=24)
    return root


def test_generated_cohort_fhir_folds_without_rejections(generated_cohort: Path) -> None:
    table = build_training_table(
        generated_cohort, "ventilation_14d", biomarker_fn=lambda d: {"lesion_percent": 1.0}
    )
    assert table.fhir_rejections == {}
    assert len(table.labels) == 12
    column = {name: table.matrix[:, i] for i, name in enumerate(FEATURES)}
    assert not np.isnan(column["age_years"]).any()
    assert not np.isnan(column["has_diabetes"]).any()
    assert np.isfinite(column["spo2_percent"]).mean() > 0.5


def test_generated_cohort_dicom_biomarkers(generated_cohort: Path) -> None:
    table = build_training_table(generated_cohort, "ventilation_14d", dicom_biomarkers)
    assert table.excluded == {}
    column = {name: table.matrix[:, i] for i, name in enumerate(FEATURES)}
    assert (column["lung_volume_ml"] > 0).all()
    assert np.isfinite(column["lesion_percent"]).all()
