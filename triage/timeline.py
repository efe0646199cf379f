"""A patient's quantified CT studies over time and the change in lung burden between them.

Pure: the streaming shell keeps each patient's points in a changelog-backed table (as the
dicts of :meth:`TimelinePoint.to_dict`) and calls :func:`follow_up` once per quantified study.
Biomarkers arrive as plain numbers (this package never imports the imaging code).

The change of a study is measured against the studies acquired *before* it (by CT time, never
by arrival order), so a redelivered or late study yields the same change every time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from triage.alerts.worsening import DEFAULT_RULE, WorseningDecision, WorseningRule, assess_worsening

#: Points kept per patient (the newest): about a month of daily CTs.
MAX_POINTS = 30


def parse_time(text: str) -> datetime:
    """An ISO 8601 time, timezone-aware (a naive one is read as UTC)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TimelinePoint:
    """One quantified study of a patient (percentages are of the lung volume)."""

    study_uid: str
    ct_time: str  # ISO 8601, the clinical clock
    lesion_percent: float
    ggo_percent: float
    consolidation_percent: float
    ct_severity_score: float | None = None  # None: the lesion model measures no zones
    bilateral: bool | None = None
    model_version: str = ""
    rsna_category: str = ""
    #: lung voxels in -950..-700 HU, % of lung (density alone; None: not measured or kept)
    well_aerated_percent: float | None = None
    lung_volume_ml: float | None = None

    @property
    def at(self) -> datetime:
        """The CT time, timezone-aware."""
        return parse_time(self.ct_time)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (as kept in the table)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TimelinePoint:
        """Back from :meth:`to_dict`."""
        return cls(**dict(data))


@dataclass(frozen=True)
class Change:
    """Burden change from an earlier study to this one (points: percentage points of lung)."""

    since_study_uid: str
    since_time: str
    interval_days: float
    lesion_from_percent: float
    lesion_points: float
    severity_points: float | None = None
    #: change of well-aerated lung (percentage points; a fall is negative)
    aerated_points: float | None = None
    #: this study's lung volume over the earlier one's (a shallower breath is well below 1)
    lung_volume_ratio: float | None = None

    @property
    def lesion_points_per_day(self) -> float | None:
        """Lesion percentage points per day (None for two CTs at the same time)."""
        return self.lesion_points / self.interval_days if self.interval_days > 0 else None

    @property
    def severity_points_per_day(self) -> float | None:
        """CT severity score points per day (None when unmeasured or same time)."""
        if self.severity_points is None or self.interval_days <= 0:
            return None
        return self.severity_points / self.interval_days

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the per-day rates."""
        return asdict(self) | {
            "lesion_points_per_day": self.lesion_points_per_day,
            "severity_points_per_day": self.severity_points_per_day,
        }


@dataclass(frozen=True)
class FollowUp:
    """What a new study adds to a timeline: the updated points, its changes, any worsening."""

    points: tuple[TimelinePoint, ...]
    since_prior: Change | None
    since_first: Change | None
    worsening: WorseningDecision | None


def change_between(earlier: TimelinePoint, later: TimelinePoint) -> Change:
    """The burden change from ``earlier`` to ``later``."""
    severity = None
    if earlier.ct_severity_score is not None and later.ct_severity_score is not None:
        severity = later.ct_severity_score - earlier.ct_severity_score
    aerated = None
    if earlier.well_aerated_percent is not None and later.well_aerated_percent is not None:
        aerated = later.well_aerated_percent - earlier.well_aerated_percent
    ratio = None
    if earlier.lung_volume_ml and later.lung_volume_ml is not None:
        ratio = later.lung_volume_ml / earlier.lung_volume_ml
    return Change(
        since_study_uid=earlier.study_uid,
        since_time=earlier.ct_time,
        interval_days=(later.at - earlier.at).total_seconds() / 86400.0,
        lesion_from_percent=earlier.lesion_percent,
        lesion_points=later.lesion_percent - earlier.lesion_percent,
        severity_points=severity,
        aerated_points=aerated,
        lung_volume_ratio=ratio,
    )


def with_study(points: Iterable[TimelinePoint], point: TimelinePoint) -> tuple[TimelinePoint, ...]:
    """The points with ``point`` added or replaced (by study UID), in CT time, newest kept."""
    kept = {p.study_uid: p for p in points}
    kept[point.study_uid] = point
    ordered = sorted(kept.values(), key=lambda p: (p.at, p.study_uid))
    return tuple(ordered[-MAX_POINTS:])


def before(points: Iterable[TimelinePoint], point: TimelinePoint) -> list[TimelinePoint]:
    """The other studies acquired before ``point``, oldest first."""
    return sorted(
        (p for p in points if p.study_uid != point.study_uid and p.at < point.at),
        key=lambda p: (p.at, p.study_uid),
    )


def follow_up(
    stored: Iterable[Mapping[str, Any]], point: TimelinePoint, rule: WorseningRule = DEFAULT_RULE
) -> FollowUp:
    """Add one quantified study to a patient's timeline: the shell's one call.

    ``stored`` is what the table holds for the patient (dicts of :meth:`TimelinePoint.to_dict`).
    Returns the points to store back, the change since the prior and the first study (None for
    the patient's first CT) and the worsening decision of ``rule`` (None: not worsening).
    """
    points = [TimelinePoint.from_dict(d) for d in stored]
    earlier = before(points, point)
    return FollowUp(
        points=with_study(points, point),
        since_prior=change_between(earlier[-1], point) if earlier else None,
        since_first=change_between(earlier[0], point) if earlier else None,
        worsening=assess_worsening(
            point.study_uid, [change_between(e, point) for e in earlier], rule
        ),
    )
