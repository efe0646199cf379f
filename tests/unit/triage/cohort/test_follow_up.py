"""SYNTHETIC follow-up CTs: share, trajectories, same patient, truth file, arrival order."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage.cohort import generate_cohort, load_manifest, load_outcomes
from triage.cohort.follow_up import (
    MILD_FRACTION,
    TrajectoryValues,
    load_follow_up,
    plan_follow_up,
)
from triage.cohort.patients import sample_profile

pytestmark = pytest.mark.unit


def test_plans_are_deterministic_and_follow_the_share() -> None:
    plans = [plan_follow_up(5, i, 0.2, 0.5) for i in range(400)]
    assert plans == [plan_follow_up(5, i, 0.2, 0.5) for i in range(400)]
    share = sum(p is not None for p in plans) / len(plans)
    assert 0.4 < share < 0.6
    assert all(plan_follow_up(5, i, 0.2, 0.0) is None for i in range(50))
    kinds = {p.trajectory for p in plans if p is not None}
    assert kinds == {
        TrajectoryValues.IMPROVING,
        TrajectoryValues.STABLE,
        TrajectoryValues.WORSENING,
    }


def test_trajectories_move_the_burden_as_named() -> None:
    for i in range(200):
        for first in (0.05, 0.3):
            plan = plan_follow_up(9, i, first, 1.0)
            assert plan is not None and 2.0 <= plan.days_after <= 5.0
            rise = plan.lesion_fraction - first
            if plan.trajectory.worsens:
                assert rise >= 0.15
                mild = plan.trajectory == TrajectoryValues.MILD_THEN_WORSENING
                assert mild == (first < MILD_FRACTION)
            elif plan.trajectory == TrajectoryValues.STABLE:
                assert abs(rise) <= 0.05 * first + 1e-9
            else:
                assert rise < 0


def test_cohort_with_follow_ups(tmp_path: Path) -> None:
    manifest = generate_cohort(tmp_path, n_patients=4, seed=3, matrix=48, slices=24,
                               icu_occupants=0, follow_up_share=1.0)  # fmt: skip
    truth = load_follow_up(tmp_path)
    assert len(truth) == 4 and len(manifest.studies) == 8
    assert load_manifest(tmp_path) == manifest  # offsets ascending: it loads back
    by_uid = {s.study_uid: s for s in manifest.studies}
    for row in truth:
        first, second = by_uid[row.prior_study_uid], by_uid[row.study_uid]
        assert first.patient_id == second.patient_id == row.patient_id
        assert (second.ct_time - first.ct_time).total_seconds() == pytest.approx(
            row.days_after * 86400.0
        )
        assert second.fhir_offset_s <= second.offset_s
        assert (tmp_path / second.study_dir).is_dir()
    assert {r.study_uid for r in load_outcomes(tmp_path)} == set(by_uid)
    index = [sample_profile(3, i).lesion_fraction_target for i in range(4)]
    assert sorted(r.lesion_fraction_prior for r in truth) == sorted(index)


def test_no_follow_up_file_without_follow_ups(tmp_path: Path) -> None:
    generate_cohort(tmp_path, n_patients=1, seed=3, matrix=48, slices=24, icu_occupants=0)
    assert load_follow_up(tmp_path) == []
    assert not (tmp_path / "follow_up.csv").exists()
