"""Site recalibration on REAL outcomes: refusals, the versioned folder, the Dutch half check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from paths import RISK_MODELS

from triage.exceptions import (
    ConfigRejected,
    ConfigRejectionReason,
    ModelArtifactError,
    ModelArtifactReason,
    ValidationReason,
    ValidationRefused,
)
from triage.risk.cohorts import ExternalCohort
from triage.risk.external import split_half_recalibration
from triage.risk.model import RiskModel
from triage.risk.recalibration import (
    MIN_EVENTS,
    calibrated_model,
    calibration_of,
    cross_validated_log_loss,
    fit_layer,
    recalibrate,
)
from triage.risk.scoring import RiskPanel, score_csv
from triage.risk.validation import parse_table

pytestmark = pytest.mark.unit


def test_too_few_events_or_non_events_are_refused_with_a_reason() -> None:
    probs = np.linspace(0.05, 0.5, 400)
    few = np.zeros(400)
    few[: MIN_EVENTS - 1] = 1
    with pytest.raises(ValidationRefused) as caught:
        fit_layer(probs, few)
    assert caught.value.reason is ValidationReason.TOO_FEW_EVENTS
    with pytest.raises(ValidationRefused) as caught:
        fit_layer(probs, 1 - few)
    assert caught.value.reason is ValidationReason.TOO_FEW_NON_EVENTS


def test_isotonic_only_with_enough_events_and_a_better_held_out_loss() -> None:
    rng = np.random.default_rng(1)
    probs = rng.random(3000)
    # the site's truth is a step no logistic curve of logit(p) can follow
    stepped = (rng.random(3000) < np.where(probs < 0.7, 0.05, 0.6)).astype(float)
    losses = cross_validated_log_loss(probs, stepped)
    assert losses["isotonic"] < losses["logistic"]
    assert fit_layer(probs, stepped).to_dict()["method"] == "isotonic"
    small = slice(0, 600)  # about 130 events: below the isotonic minimum
    assert fit_layer(probs[small], stepped[small]).to_dict()["method"] == "logistic"
    # a truth on the logistic family: two numbers predict new patients better than steps
    shifted = (
        rng.random(3000) < 1 / (1 + np.exp(-(0.5 + 1.3 * np.log(probs / (1 - probs)))))
    ).astype(float)
    losses = cross_validated_log_loss(probs, shifted)
    assert losses["logistic"] < losses["isotonic"]
    assert fit_layer(probs, shifted).to_dict()["method"] == "logistic"


@pytest.fixture(scope="module")
def dutch_site(
    dutch: ExternalCohort, shipped_panel: RiskPanel, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    """Models recalibrated on the first 11,112 Dutch patients' death outcome."""
    rows = dutch.rows()[:11_112]
    for row in rows:
        row.pop("icu")
    out = tmp_path_factory.mktemp("site")
    summary = recalibrate(
        parse_table(rows), shipped_panel, out, site="nl-test", source_sha256="0" * 64
    )
    return out, summary


def test_recalibrated_folder_loads_and_names_its_calibration(
    dutch_site: tuple[Path, dict], shipped_panel: RiskPanel
) -> None:
    out, summary = dutch_site
    assert summary["outcomes"]["death"]["method"] == "isotonic"
    site = RiskPanel.load(out)
    base = shipped_panel.fused["death"].version
    assert site.fused["death"].version.startswith(f"{base}+site.")
    assert site.clinical["death"].version.startswith(shipped_panel.clinical["death"].version)
    assert site.fused["icu"].version == shipped_panel.fused["icu"].version  # not in the table
    assert site.fused["death"].card["site_calibration"]["fitted_on"]["rows"] == 11_112


def test_risk_score_uses_the_recalibrated_folder(
    dutch_site: tuple[Path, dict], tmp_path: Path
) -> None:
    out, _ = dutch_site
    source = tmp_path / "p.csv"
    source.write_text("age,sex\n85,M\n")
    shipped, site = tmp_path / "a.csv", tmp_path / "b.csv"
    score_csv(source, shipped, RiskPanel.load(RISK_MODELS))
    score_csv(source, site, RiskPanel.load(out))
    column = lambda p: p.read_text().splitlines()[1].split(",")[4]  # noqa: E731
    assert column(shipped) != column(site)  # risk_death moved by the Dutch layer


def test_a_tampered_site_layer_is_refused(dutch_site: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = dutch_site
    card = json.loads((out / "death.card.json").read_text())
    card["site_calibration"]["layer"]["y"][-1] = 0.999
    (tmp_path / "death.ubj").write_bytes((out / "death.ubj").read_bytes())
    (tmp_path / "death.card.json").write_text(json.dumps(card))
    with pytest.raises(ModelArtifactError) as caught:
        RiskModel.load(tmp_path / "death.ubj")
    assert caught.value.reason is ModelArtifactReason.VERSION_MISMATCH


def test_a_policy_calibration_scores_as_the_recalibrated_folder_does(
    dutch_site: tuple[Path, dict], shipped_panel: RiskPanel
) -> None:
    """What ``triage.config`` carries (``calibration_of``) turns the worker's model into the
    folder's: same version, same probabilities; put on a model that already has a layer it
    replaces that layer, never stacks."""
    out, _ = dutch_site
    folder = RiskModel.load(out / "death.ubj")
    calibration = calibration_of(out / "death.ubj")
    base = shipped_panel.fused["death"]
    assert calibration["base_version"] == base.version
    calibrated = calibrated_model(base, calibration)
    rows = np.array([[np.nan] * len(base.features), [np.nan] * len(base.features)])
    rows[:, base.features.index("age_years")] = [45.0, 85.0]
    assert calibrated.version == folder.version and calibrated.base_version == base.version
    np.testing.assert_allclose(calibrated.predict_proba(rows), folder.predict_proba(rows))
    assert not np.allclose(calibrated.predict_proba(rows), base.predict_proba(rows))
    again = calibrated_model(folder, calibration)  # the folder's own layer is replaced
    np.testing.assert_allclose(again.predict_proba(rows), folder.predict_proba(rows))
    plain = folder.with_site_calibration(None)
    assert plain.version == base.version and plain.site is None
    np.testing.assert_allclose(plain.predict_proba(rows), base.predict_proba(rows))
    assert calibrated_model(base, None) is base


def test_a_calibration_for_another_model_or_malformed_is_refused(
    dutch_site: tuple[Path, dict], shipped_panel: RiskPanel
) -> None:
    out, _ = dutch_site
    calibration = calibration_of(out / "death.ubj")
    with pytest.raises(ConfigRejected) as caught:  # fitted on the death model, not ventilation
        calibrated_model(shipped_panel.fused["ventilation"], calibration)
    assert caught.value.reason is ConfigRejectionReason.CALIBRATION_MODEL_MISMATCH
    broken = {**calibration, "site_calibration": {"layer": {"method": "isotonic", "x": [0.5]}}}
    with pytest.raises(ConfigRejected) as caught:
        calibrated_model(shipped_panel.fused["death"], broken)
    assert caught.value.reason is ConfigRejectionReason.INVALID_CALIBRATION
    with pytest.raises(ConfigRejected) as caught:  # the shipped folder has no site layer
        calibration_of(RISK_MODELS / "death.ubj")
    assert caught.value.reason is ConfigRejectionReason.INVALID_CALIBRATION


def test_dutch_death_slope_is_within_0_8_to_1_2_on_the_other_half(
    dutch: ExternalCohort, shipped_panel: RiskPanel
) -> None:
    check = split_half_recalibration(dutch, shipped_panel, "death", seed=2020)
    assert check["fit_rows"] + check["validation_rows"] == len(dutch.table)
    assert 0.8 <= check["after"]["calibration_slope"] <= 1.2
    assert abs(check["after"]["calibration_in_the_large"]) < abs(
        check["before"]["calibration_in_the_large"]
    )
