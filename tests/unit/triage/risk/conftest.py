"""Fixtures of the risk tests: the real clinical cohorts and the shipped models, loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest
from paths import RISK_MODELS

from triage.risk.cohorts import ExternalCohort, netherlands, sirio_libanes, wuhan_tongji
from triage.risk.scoring import RiskPanel


@pytest.fixture(scope="session")
def clinical(shared_data: Path) -> Path:
    """``../shared/data/clinical`` (REAL data)."""
    return shared_data / "clinical"


@pytest.fixture(scope="session")
def shipped_panel() -> RiskPanel:
    """The shipped fused and clinical-only models of every outcome."""
    return RiskPanel.load(RISK_MODELS)


@pytest.fixture(scope="session")
def dutch(clinical: Path) -> ExternalCohort:
    """The Dutch hospitalised cohort (22,224 patients)."""
    return netherlands(clinical / "netherlands-hosp")


@pytest.fixture(scope="session")
def sirio(clinical: Path) -> ExternalCohort:
    """The Sirio-Libanes ICU cohort, first window."""
    return sirio_libanes(clinical / "sirio-libanes-icu")


@pytest.fixture(scope="session")
def tongji(clinical: Path) -> ExternalCohort:
    """The Tongji (Wuhan) cohort, 375 patients."""
    return wuhan_tongji(clinical / "wuhan-tongji")
