"""What a replay produced, summarised for the demo screen and the tests (pure functions)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streams.records import Alert, DeadLetter, RiskAssessment, UnitForecastRecord
from triage.cohort import load_outcomes


@dataclass
class ReplayOutcome:
    """Everything the pipeline emitted for one replay, collected from its topics."""

    risks: dict[str, RiskAssessment] = field(default_factory=dict)
    alerts: dict[str, Alert] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    forecast: UnitForecastRecord | None = None
    risk_records: int = 0  # including redeliveries and re-scorings
    # first scorings (revision 0) per study, to check "exactly one per study"; late clinical
    # data adds revisions 1, 2, ... that supersede it
    first_scorings: Counter[str] = field(default_factory=Counter)
    #: each study's first scoring (revision 0, the earliest if redelivered): what the ED waits
    #: for after a CT, and what end-to-end latency is measured on (a re-score after late
    #: clinical data is scored when that data arrives, not when the CT did)
    first_risks: dict[str, RiskAssessment] = field(default_factory=dict)

    def add_risk(self, risk: RiskAssessment) -> None:
        """Keep the latest revision of each study's risk, and its first scoring."""
        self.risk_records += 1
        if risk.revision == 0:
            self.first_scorings[risk.study_uid] += 1
            first = self.first_risks.get(risk.study_uid)
            if first is None or risk.scored_at < first.scored_at:
                self.first_risks[risk.study_uid] = risk
        latest = self.risks.get(risk.study_uid)
        if latest is None or risk.revision >= latest.revision:
            self.risks[risk.study_uid] = risk

    def rejected_studies(self) -> set[str]:
        """Study UIDs dead-lettered by any stage."""
        import json

        uids: set[str] = set()
        for letter in self.dead_letters:
            try:
                uid = json.loads(letter.payload).get("study_uid")
            except (ValueError, AttributeError):
                continue
            if isinstance(uid, str):
                uids.add(uid)
        return uids


@dataclass(frozen=True)
class LatencySummary:
    """End-to-end latency (CT event published -> risk record) and its breakdown, in seconds."""

    p50_s: float
    p95_s: float
    mean_load_s: float
    mean_inference_s: float
    mean_scoring_s: float


@dataclass(frozen=True)
class SyntheticMatch:
    """How alerts matched the simulated outcomes. SYNTHETIC: proves plumbing, not validity."""

    studies: int
    ventilated: int
    alerted: int
    true_alerts: int
    sensitivity: float | None
    ppv: float | None
    auc: float | None


def latency_summary(risks: list[RiskAssessment]) -> LatencySummary | None:
    """Percentiles of end-to-end latency and mean stage times.

    Pass first scorings (:attr:`ReplayOutcome.first_risks`): a later revision's latency counts
    the wait for late clinical data, not the pipeline.
    """
    if not risks:
        return None
    latencies = np.array([r.latency_s for r in risks])
    return LatencySummary(
        p50_s=float(np.percentile(latencies, 50)),
        p95_s=float(np.percentile(latencies, 95)),
        mean_load_s=float(np.mean([r.timings.load_s for r in risks])),
        mean_inference_s=float(np.mean([r.timings.inference_s for r in risks])),
        mean_scoring_s=float(np.mean([r.timings.scoring_s for r in risks])),
    )


def simulated_ventilation(cohort_dir: Path) -> dict[str, bool]:
    """Study UID -> simulated ventilation within 14 days, from a cohort's outcomes."""
    return {row.study_uid: row.ventilation_14d for row in load_outcomes(cohort_dir)}


def auc(scores: list[float], labels: list[bool]) -> float | None:
    """Area under the ROC curve (Mann-Whitney), None when one class is absent."""
    positives = [s for s, y in zip(scores, labels, strict=True) if y]
    negatives = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not positives or not negatives:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return float(wins / (len(positives) * len(negatives)))


def synthetic_match(outcome: ReplayOutcome, ventilated: dict[str, bool]) -> SyntheticMatch:
    """Compare alerts and risks with the simulated outcomes of the scored studies."""
    scored = [uid for uid in outcome.risks if uid in ventilated]
    alerted = {a.study_uid for a in outcome.alerts.values()}
    positives = [uid for uid in scored if ventilated[uid]]
    true_alerts = sum(1 for uid in positives if uid in alerted)
    alerted_scored = [uid for uid in scored if uid in alerted]
    return SyntheticMatch(
        studies=len(scored),
        ventilated=len(positives),
        alerted=len(alerted_scored),
        true_alerts=true_alerts,
        sensitivity=true_alerts / len(positives) if positives else None,
        ppv=true_alerts / len(alerted_scored) if alerted_scored else None,
        auc=auc(
            [outcome.risks[uid].probability for uid in scored], [ventilated[u] for u in scored]
        ),
    )
