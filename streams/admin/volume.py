"""Study volume for the operating-point table: given by the user, or measured in the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from dashboards import make_engine, recent_studies_per_day, studies

VOLUME_WINDOW_DAYS = 7.0


@dataclass(frozen=True)
class StudyVolume:
    """Studies per day and where the number comes from (None: unknown)."""

    studies_per_day: float | None
    source: str


def study_volume(
    store_url: str | None, given: float | None, days: float = VOLUME_WINDOW_DAYS
) -> StudyVolume:
    """``given`` when set; else the store's studies of the last ``days`` per day."""
    if given is not None:
        return StudyVolume(float(given), "given (--studies-per-day)")
    if not store_url:
        return StudyVolume(None, "unknown: no store configured; pass --studies-per-day")
    url = make_url(store_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return StudyVolume(None, f"unknown: store {url.database} does not exist yet")
    engine = make_engine(store_url)
    try:
        if not inspect(engine).has_table(studies.name):
            return StudyVolume(None, "unknown: the store has no studies table yet")
        with engine.connect() as conn:
            per_day = recent_studies_per_day(conn, datetime.now(UTC), days)
    except SQLAlchemyError as e:
        return StudyVolume(None, f"unknown: store unreadable ({type(e).__name__})")
    finally:
        engine.dispose()
    count = round(per_day * days)
    return StudyVolume(round(per_day, 2), f"store: {count} studies in the last {days:g} days")
