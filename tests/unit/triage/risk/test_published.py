"""Published 4C points in the death models: recorded labs and vitals move death, absent ones
nothing; the points, the scale and the card block (issue 13)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from paths import RISK_MODELS

from triage.exceptions import ModelArtifactError
from triage.fhir.features import FEATURES
from triage.risk.model import RiskModel, card_path
from triage.risk.published import LOG_ODDS_PER_POINT, PublishedPoints, attach
from triage.risk.scoring import RiskPanel

pytestmark = pytest.mark.unit

PATIENT = {"age_years": 71.0, "sex_male": 1.0, "has_diabetes": 1.0, "has_hypertension": 0.0}


def _row(**values: float) -> np.ndarray:
    row = np.full(len(FEATURES), np.nan)
    for name, value in values.items():
        row[FEATURES.index(name)] = value
    return row


@pytest.mark.parametrize(
    ("values", "points"),
    [
        ({}, 0),  # nothing recorded: nothing added
        ({"crp_mg_per_l": 49.9, "respiratory_rate_per_min": 19, "spo2_percent": 92}, 0),
        ({"crp_mg_per_l": 50}, 1),
        ({"crp_mg_per_l": 180}, 2),
        ({"respiratory_rate_per_min": 24}, 1),
        ({"respiratory_rate_per_min": 30}, 2),
        ({"spo2_percent": 91}, 2),
        ({"crp_mg_per_l": 120, "respiratory_rate_per_min": 32, "spo2_percent": 85}, 6),
    ],
)
def test_the_4c_points_of_recorded_fields(values: dict[str, float], points: int) -> None:
    published = PublishedPoints.four_c()
    assert published.points(_row(**values)).sum() == points
    assert published.log_odds(_row(**values))[0] == pytest.approx(points * LOG_ODDS_PER_POINT)


def test_the_scale_is_the_papers_risk_groups() -> None:
    """0.287 = least squares of logit(in-hospital death) on the four groups' midpoints."""
    x = np.array([1.5, 6.0, 11.5, 18.0])
    p = np.array([0.012, 0.099, 0.314, 0.615])
    assert np.polyfit(x, np.log(p / (1 - p)), 1)[0] == pytest.approx(LOG_ODDS_PER_POINT, abs=5e-4)


def test_recorded_labs_move_death_and_are_explained_absent_ones_do_nothing() -> None:
    panel = RiskPanel.load(RISK_MODELS)
    death, ventilation = panel.clinical["death"], panel.clinical["ventilation"]
    assert death.published is not None and ventilation.published is None
    plain = death.score(PATIENT)
    high = death.score({**PATIENT, "crp_mg_per_l": 150.0, "spo2_percent": 88.0})
    low = death.score({**PATIENT, "crp_mg_per_l": 10.0, "spo2_percent": 97.0})
    odds = lambda p: p / (1 - p)  # noqa: E731
    assert math.log(odds(high.probability) / odds(plain.probability)) == pytest.approx(
        4 * LOG_ODDS_PER_POINT, rel=1e-4
    )
    assert low.probability == plain.probability  # normal values add no points
    named = {c.feature: c for c in high.top_features}
    assert named["crp_mg_per_l"].contribution == pytest.approx(2 * LOG_ODDS_PER_POINT)
    assert named["crp_mg_per_l"].direction.value == "raises"
    assert "crp_mg_per_l" not in {c.feature for c in plain.top_features}
    # the batch path agrees with one patient's
    matrix = np.stack([_row(**PATIENT), _row(**PATIENT, crp_mg_per_l=150.0, spo2_percent=88.0)])
    batch = death.predict_proba(matrix)
    assert batch == pytest.approx([plain.probability, high.probability], rel=1e-5)
    assert ventilation.score({**PATIENT, "crp_mg_per_l": 150.0}).probability == pytest.approx(
        ventilation.score(PATIENT).probability
    )


def test_the_block_is_part_of_the_version(tmp_path: Path) -> None:
    for suffix in (".ubj", ".card.json"):
        shutil.copy(RISK_MODELS / f"death{suffix}", tmp_path / f"death{suffix}")
    card = card_path(tmp_path / "death.ubj")
    block = json.loads(card.read_text())
    block["published_points"]["log_odds_per_point"] = 0.5  # changed without a new version
    card.write_text(json.dumps(block))
    with pytest.raises(ModelArtifactError, match="hash"):
        RiskModel.load(tmp_path / "death.ubj")
    assert attach(tmp_path / "death.ubj") == RiskModel.load(RISK_MODELS / "death.ubj").version


def test_a_malformed_block_is_refused() -> None:
    with pytest.raises(ValueError, match="not a model feature"):
        PublishedPoints.from_dict({"fields": {"urea": {"at_least": [[7, 1]]}}})
    with pytest.raises(ValueError, match="'at_least' or 'below'"):
        PublishedPoints.from_dict({"fields": {"crp_mg_per_l": {"above": [[7, 1]]}}})
