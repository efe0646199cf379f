"""The worker's worsening rule: the hospital's audited policy first, else the worker setting."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from streams.agents.timeline import rule_of
from streams.settings import Settings
from triage.alerts import AlertPolicy, WorseningRule

pytestmark = pytest.mark.unit

LEVELS = {"moderate": 0.1, "high": 0.2, "critical": 0.6}


def _pipeline(policies: dict[str, AlertPolicy]) -> SimpleNamespace:
    default = AlertPolicy(LEVELS, "t1")
    return SimpleNamespace(
        settings=Settings(worker={"worsening_lesion_rise_points": 12.0}),
        policy_for=lambda hospital: policies.get(hospital, default),
    )


def test_the_audited_rule_of_a_hospital_wins_over_the_worker_setting() -> None:
    audited = AlertPolicy(LEVELS, "t2", worsening=WorseningRule(lesion_rise_points=8.0))
    pipeline = _pipeline({"h1": audited})
    assert rule_of(pipeline, "h1").version == "worsening-8pp-5cts-10wal-7d"  # type: ignore[arg-type]
    assert rule_of(pipeline, "h2").version == "worsening-12pp-5cts-10wal-7d"  # type: ignore[arg-type]
