"""Summary arithmetic of a replay (pure)."""

from __future__ import annotations

import pytest

from streams.demo.summary import ReplayOutcome, auc, latency_summary, synthetic_match
from streams.records import Alert, RiskAssessment, StageTimings

pytestmark = pytest.mark.unit


def _risk(uid: str, p: float, latency: float) -> RiskAssessment:
    return RiskAssessment(
        risk_id=f"r{uid}",
        study_uid=uid,
        patient_pseudonym="k1-x",
        probability=p,
        level="high" if p >= 0.5 else "low",
        alert=p >= 0.5,
        model_version="m",
        threshold_version="t",
        threshold=0.5,
        biomarkers={"lesion_percent": 10.0},
        top_features=[],
        completeness="complete",
        ct_time="2020-11-02T08:00:00+00:00",
        hospital="h",
        published_at=100.0,
        scored_at=100.0 + latency,
        timings=StageTimings(load_s=0.1, inference_s=0.2, scoring_s=0.001),
    )


def test_auc_is_mann_whitney() -> None:
    assert auc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert auc([0.1, 0.9], [True, False]) == 0.0
    assert auc([0.5, 0.5], [True, False]) == 0.5
    assert auc([0.5], [True]) is None


def test_latency_percentiles() -> None:
    summary = latency_summary([_risk(str(i), 0.1, float(i)) for i in range(1, 101)])
    assert summary is not None
    assert summary.p50_s == pytest.approx(50.5)
    assert summary.p95_s == pytest.approx(95.05)
    assert summary.mean_inference_s == pytest.approx(0.2)
    assert latency_summary([]) is None


def test_latency_is_measured_on_each_study_s_first_scoring() -> None:
    """A re-score after late clinical data supersedes the risk but is scored when that data
    arrives: the CT's latency is its first scoring's (the earliest, if redelivered)."""
    outcome = ReplayOutcome()
    first, redelivered = _risk("a", 0.2, 8.0), _risk("a", 0.2, 30.0)
    late = _risk("a", 0.6, 25.0).model_copy(update={"revision": 1})
    for risk in (redelivered, late, first):
        outcome.add_risk(risk)
    assert outcome.risks["a"].revision == 1
    assert outcome.first_risks["a"].latency_s == 8.0
    summary = latency_summary(list(outcome.first_risks.values()))
    assert summary is not None and summary.p95_s == 8.0


def test_synthetic_match_counts_alerts_against_outcomes() -> None:
    outcome = ReplayOutcome()
    for uid, p in [("a", 0.9), ("b", 0.7), ("c", 0.2), ("d", 0.1)]:
        outcome.add_risk(_risk(uid, p, 1.0))
    for uid in ("a", "b"):
        risk = outcome.risks[uid]
        outcome.alerts[f"al-{uid}"] = Alert(
            alert_id=f"al-{uid}",
            risk_id=risk.risk_id,
            study_uid=uid,
            patient_pseudonym="k1-x",
            probability=risk.probability,
            level="high",
            model_version="m",
            threshold_version="t",
            lesion_percent=10.0,
            top_features=[],
            completeness="complete",
            ct_time=risk.ct_time,
            hospital="h",
            raised_at=101.0,
        )
    match = synthetic_match(outcome, {"a": True, "b": False, "c": True, "d": False})
    assert (match.studies, match.ventilated, match.alerted, match.true_alerts) == (4, 2, 2, 1)
    assert match.sensitivity == 0.5 and match.ppv == 0.5
    assert match.auc == 0.75
