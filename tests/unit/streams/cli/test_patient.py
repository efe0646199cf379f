"""``ctriage patient timeline``: the patient's studies in CT time, the change, the PNG."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from streams.cli.patient import patient_studies, timeline_table, worsening_studies
from streams.demo.summary import ReplayOutcome
from streams.mapping import timeline_point_of_risk
from streams.records import Alert, BurdenChange, RiskAssessment, StageTimings
from triage.timeline_plot import plot_timeline

pytestmark = pytest.mark.unit


def risk(uid: str, ct_time: str, lesion: float, who: str = "p1", **extra: object) -> RiskAssessment:
    return RiskAssessment(
        risk_id=f"r-{uid}", study_uid=uid, patient_pseudonym=who, probability=0.3, level="high",
        alert=True, model_version="m1", threshold_version="t1", threshold=0.2,
        biomarkers={"lesion_percent": lesion, "ggo_percent": lesion * 0.7,
                    "consolidation_percent": lesion * 0.3},
        top_features=[], completeness="complete", ct_time=ct_time, hospital="h", published_at=0.0,
        scored_at=1.0, timings=StageTimings(),
        regional={"ct_severity_score": 9.0, "bilateral": 1.0},
        **extra,
    )  # fmt: skip


CHANGE = BurdenChange(
    since_study_uid="a", since_time="2020-11-02T08:00:00+00:00", interval_days=3.0,
    lesion_from_percent=12.0, lesion_points=19.0,
)  # fmt: skip


@pytest.fixture
def outcome() -> ReplayOutcome:
    out = ReplayOutcome()
    out.add_risk(risk("b", "2020-11-05T08:00:00+00:00", 31.0, change_since_prior=CHANGE,
                      rsna_category="typical"))  # fmt: skip
    out.add_risk(risk("a", "2020-11-02T08:00:00+00:00", 12.0))
    out.add_risk(risk("x", "2020-11-03T08:00:00+00:00", 50.0, who="p2"))
    alert = Alert(
        alert_id="w1", risk_id="r-b", study_uid="b", patient_pseudonym="p1", probability=0.3,
        level="high", model_version="m1", threshold_version="t1", lesion_percent=31.0,
        top_features=[], completeness="complete", ct_time="2020-11-05T08:00:00+00:00",
        hospital="h", raised_at=1.0, kind="worsening",
    )  # fmt: skip
    out.alerts[alert.alert_id] = alert
    return out


def test_table_lists_the_patients_studies_in_ct_time(outcome: ReplayOutcome) -> None:
    risks = patient_studies(outcome, "p1")
    assert [r.study_uid for r in risks] == ["a", "b"]
    console = Console(width=200, record=True)
    console.print(timeline_table(risks, worsening_studies(outcome, "p1"), "p1"))
    text = console.export_text()
    assert "first CT" in text
    assert "+19.0 pts in 3.0 d WORSENING" in text
    assert "typical" in text and "9/30" in text


def test_png_is_drawn(outcome: ReplayOutcome, tmp_path: Path) -> None:
    points = [timeline_point_of_risk(r) for r in patient_studies(outcome, "p1")]
    out = plot_timeline(points, tmp_path / "t.png", worsening={"b"},
                        treatments=[(points[0].at, "dexamethasone")])  # fmt: skip
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000
