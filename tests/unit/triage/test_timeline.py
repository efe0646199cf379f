"""A patient's timeline: ordering, idempotence, change since prior/first, worsening on follow-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triage.alerts.worsening import WorseningReasonValues, WorseningRule
from triage.timeline import MAX_POINTS, TimelinePoint, follow_up

pytestmark = pytest.mark.unit

START = datetime(2020, 11, 1, tzinfo=UTC)


def point(
    uid: str,
    day: float,
    lesion: float,
    severity: float | None = None,
    aerated: float | None = None,
    lung_ml: float | None = None,
) -> TimelinePoint:
    return TimelinePoint(
        study_uid=uid,
        ct_time=(START + timedelta(days=day)).isoformat(),
        lesion_percent=lesion,
        ggo_percent=lesion * 0.8,
        consolidation_percent=lesion * 0.2,
        ct_severity_score=severity,
        well_aerated_percent=aerated,
        lung_volume_ml=lung_ml,
    )


def stored(*points: TimelinePoint) -> list[dict]:
    return [p.to_dict() for p in points]


def test_first_study_has_no_change() -> None:
    got = follow_up([], point("a", 0, 12.0))
    assert got.since_prior is None and got.since_first is None and got.worsening is None
    assert [p.study_uid for p in got.points] == ["a"]


def test_change_since_prior_and_first_with_rates() -> None:
    history = stored(point("a", 0, 5.0, 4.0), point("b", 1, 12.0, 7.0))
    got = follow_up(history, point("c", 4, 31.0, 13.0))
    assert got.since_prior is not None and got.since_first is not None
    assert got.since_prior.since_study_uid == "b"
    assert got.since_prior.lesion_points == pytest.approx(19.0)
    assert got.since_prior.interval_days == pytest.approx(3.0)
    assert got.since_prior.lesion_points_per_day == pytest.approx(19.0 / 3)
    assert got.since_first.since_study_uid == "a"
    assert got.since_first.severity_points == pytest.approx(9.0)
    assert got.since_first.as_dict()["severity_points_per_day"] == pytest.approx(9.0 / 4)


def test_change_is_by_ct_time_not_arrival_and_redelivery_is_idempotent() -> None:
    late_prior = point("early", 0, 10.0)
    history = stored(point("later", 5, 30.0))
    got = follow_up(history, late_prior)  # an older study arriving after a newer one
    assert got.since_prior is None
    assert [p.study_uid for p in got.points] == ["early", "later"]
    again = follow_up(stored(*got.points), point("later", 5, 30.0))
    assert again.since_prior is not None and again.since_prior.lesion_points == pytest.approx(20.0)
    assert len(again.points) == 2


def test_timeline_is_bounded_to_the_newest_points() -> None:
    history = stored(*(point(f"s{i:02d}", i * 0.5, 1.0) for i in range(MAX_POINTS + 5)))
    got = follow_up(history, point("new", 40, 2.0))
    assert len(got.points) == MAX_POINTS
    assert got.points[-1].study_uid == "new"


def test_mild_then_worsening_is_secondary_worsening() -> None:
    got = follow_up(stored(point("a", 0, 4.0, 3.0)), point("b", 3, 16.0, 6.0))
    assert got.worsening is not None
    assert got.worsening.reasons == (WorseningReasonValues.LESION_RISE,)
    assert got.worsening.secondary
    assert got.worsening.rule_version == "worsening-10pp-5cts-10wal-7d"


def test_small_steps_add_up_within_the_window() -> None:
    history = stored(point("a", 0, 10.0), point("b", 2, 16.0))
    got = follow_up(history, point("c", 4, 21.0))  # +5 since prior, +11 since a (4 days)
    assert got.worsening is not None
    assert got.worsening.change.since_study_uid == "a"
    assert not got.worsening.secondary


@pytest.mark.parametrize(
    ("later", "why"),
    [
        (point("b", 3, 19.9, 8.0), "below both thresholds"),
        (point("b", 8, 40.0, 20.0), "outside the 7-day window"),
        (point("b", 3, 5.0, 1.0), "improving"),
    ],
)
def test_no_worsening(later: TimelinePoint, why: str) -> None:
    got = follow_up(stored(point("a", 0, 10.0, 4.0)), later)
    assert got.worsening is None, why


def test_severity_rise_alone_fires_and_rules_are_configurable() -> None:
    got = follow_up(stored(point("a", 0, 10.0, 4.0)), point("b", 2, 14.0, 10.0))
    assert got.worsening is not None
    assert got.worsening.reasons == (WorseningReasonValues.SEVERITY_RISE,)
    strict = WorseningRule(lesion_rise_points=20.0, severity_rise_points=10.0, within_days=3.0)
    assert (
        follow_up(stored(point("a", 0, 10.0, 4.0)), point("b", 2, 14.0, 10.0), strict).worsening
        is None
    )
    assert (
        got.worsening.alert_id
        != follow_up(
            stored(point("a", 0, 10.0, 4.0)), point("b", 2, 40.0, 10.0), strict
        ).worsening.alert_id
    )  # type: ignore[union-attr]


def test_rule_refuses_non_positive_thresholds() -> None:
    with pytest.raises(ValueError, match="positive"):
        WorseningRule(within_days=0.0)


def test_a_fall_of_aerated_lung_fires_when_the_lesion_model_under_reads_the_rise() -> None:
    # a heavy follow-up whose new consolidation the lesion model misses (docs/longitudinal.md):
    # lesion +4, severity +1, well-aerated lung 54 -> 39 %
    prior = point("a", 0, 38.0, 19.0, aerated=54.0, lung_ml=4500.0)
    got = follow_up(stored(prior), point("b", 2, 42.0, 20.0, aerated=39.0, lung_ml=4450.0))
    assert got.worsening is not None
    assert got.worsening.reasons == (WorseningReasonValues.AERATED_FALL,)
    assert got.worsening.change.aerated_points == pytest.approx(-15.0)
    assert got.worsening.change.lung_volume_ratio == pytest.approx(4450 / 4500)
    assert got.since_prior is not None
    assert got.since_prior.as_dict()["aerated_points"] == pytest.approx(-15.0)


def test_a_shallower_breath_is_not_worsening() -> None:
    # aeration falls 15 points but the lung shrank to 80 % of its volume: not counted
    prior = point("a", 0, 20.0, 10.0, aerated=75.0, lung_ml=5000.0)
    got = follow_up(stored(prior), point("b", 2, 21.0, 10.0, aerated=60.0, lung_ml=4000.0))
    assert got.worsening is None


def test_aerated_fall_is_a_dial_and_unmeasured_aeration_is_not_a_fall() -> None:
    prior = point("a", 0, 38.0, 19.0, aerated=54.0, lung_ml=4500.0)
    later = point("b", 2, 42.0, 20.0, aerated=46.0, lung_ml=4500.0)  # -8
    assert follow_up(stored(prior), later).worsening is None
    lenient = WorseningRule(aerated_fall_points=5.0)
    decided = follow_up(stored(prior), later, lenient).worsening
    assert decided is not None and decided.rule_version == "worsening-10pp-5cts-5wal-7d"
    # points kept before aeration was recorded: no fall is read from them
    old = point("a", 0, 38.0, 19.0)
    assert follow_up(stored(old), point("b", 2, 42.0, 20.0, aerated=10.0)).worsening is None


def test_every_criterion_that_fired_is_named_lesion_first() -> None:
    prior = point("a", 0, 10.0, 4.0, aerated=80.0, lung_ml=4500.0)
    got = follow_up(stored(prior), point("b", 3, 30.0, 12.0, aerated=62.0, lung_ml=4400.0))
    assert got.worsening is not None
    assert got.worsening.reasons == (
        WorseningReasonValues.LESION_RISE,
        WorseningReasonValues.SEVERITY_RISE,
        WorseningReasonValues.AERATED_FALL,
    )
    assert got.worsening.change.lesion_points == pytest.approx(20.0)


def test_points_stored_before_aeration_was_kept_still_load() -> None:
    old_dict = {k: v for k, v in point("a", 0, 5.0).to_dict().items()
                if k not in ("well_aerated_percent", "lung_volume_ml")}  # fmt: skip
    assert TimelinePoint.from_dict(old_dict).well_aerated_percent is None
