"""A ``triage.config`` record on a worker: the policy and the hospital's risk model in force."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from paths import RISK_MODELS

from streams.agents.config import apply_config
from streams.pipeline import Pipeline
from streams.records import TriageConfig
from streams.settings import Settings
from triage.exceptions import ConfigRejected, ConfigRejectionReason
from triage.risk import RiskModel

pytestmark = pytest.mark.unit

LEVELS = {"moderate": 0.1, "high": 0.2, "critical": 0.6}


@pytest.fixture(scope="module")
def model() -> RiskModel:
    return RiskModel.load(RISK_MODELS / "ventilation.ubj")


def _pipeline(model: RiskModel) -> Pipeline:
    pipeline = SimpleNamespace(deps=SimpleNamespace(risk_model=model), policies={}, site_models={})
    pipeline.model_for = lambda h: Pipeline.model_for(pipeline, h)  # type: ignore[arg-type]
    return pipeline  # type: ignore[return-value]


def _config(version: str, calibration: dict[str, Any] | None) -> TriageConfig:
    return TriageConfig(hospital="h1", threshold_version=version, levels=LEVELS,
                        changed_by="ana", reason="test", changed_at=time.time(),
                        calibration=calibration)  # fmt: skip


def test_a_policy_with_a_calibration_puts_the_calibrated_model_in_force(model: RiskModel) -> None:
    pipeline = _pipeline(model)
    layer = {"method": "logistic", "intercept": 0.7, "slope": 0.8}
    calibration = {"base_version": model.version, "site_calibration": {"site": "s", "layer": layer}}
    apply_config(pipeline, _config("t2", calibration))
    calibrated = pipeline.model_for("h1")
    assert calibrated.version.startswith(f"{model.version}+site.")
    assert pipeline.model_for("h2") is model  # other hospitals: the model as loaded
    row = np.full((1, len(model.features)), np.nan)
    row[0, model.features.index("age_years")] = 70.0
    p, q = model.predict_proba(row)[0], calibrated.predict_proba(row)[0]
    logit = lambda x: np.log(x / (1 - x))  # noqa: E731
    assert logit(q) == pytest.approx(0.7 + 0.8 * logit(p), abs=1e-6)

    foreign = {**calibration, "base_version": "0123456789ab"}
    with pytest.raises(ConfigRejected) as caught:
        apply_config(pipeline, _config("t3", foreign))
    assert caught.value.reason is ConfigRejectionReason.CALIBRATION_MODEL_MISMATCH
    assert pipeline.policies["h1"].threshold_version == "t2"  # the previous policy stays
    assert pipeline.model_for("h1") is calibrated

    apply_config(pipeline, _config("t4", None))
    assert pipeline.model_for("h1") is model and pipeline.policies["h1"].calibration is None


def test_scoring_waits_for_the_policies_in_force_then_goes_on_without_them(
    model: RiskModel, caplog: pytest.LogCaptureFixture
) -> None:
    """A restarted worker scored a redelivered study before reading triage.config, alerting
    under the default policy (a version no longer in force)."""
    settings = Settings(worker={"config_catch_up_s": 0.3})
    pipeline = Pipeline(app=None, settings=settings, deps=None)  # type: ignore[arg-type]

    async def read_after(delay_s: float) -> float:
        started = time.monotonic()
        asyncio.get_running_loop().call_later(delay_s, pipeline.config_read.set)
        await pipeline.policies_read()
        return time.monotonic() - started

    assert 0.1 <= asyncio.run(read_after(0.1)) < 0.3  # waited for the catch-up
    assert asyncio.run(read_after(5.0)) < 0.05  # once read, never again
    late = Pipeline(app=None, settings=settings, deps=None)  # type: ignore[arg-type]
    started = time.monotonic()
    asyncio.run(late.policies_read())  # Kafka silent: the bounded wait, then the defaults
    assert 0.3 <= time.monotonic() - started < 1.0 and late.config_read.is_set()
    assert "triage.config not read within" in caplog.text
