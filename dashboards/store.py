"""The reporting store that Grafana queries: SQLAlchemy Core tables and idempotent upserts.

SQLite file by default (WAL, so the demo reads while the worker writes), PostgreSQL by URL.
Rows are keyed by the pipeline's deterministic ids, so an at-least-once redelivery rewrites the
same row. Only pseudonyms are stored: never names or birth dates.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url

metadata = MetaData()

studies = Table(
    "studies",
    metadata,
    Column("study_uid", String(64), primary_key=True),
    Column("patient_pseudonym", String(64), nullable=False, index=True),
    Column("status", String(16), nullable=False),  # scored | rejected
    Column("reason_code", String(64)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def _scored_study_columns() -> list[Column[Any]]:
    """The columns that describe a scored study, shared by ``risks`` and ``alerts``."""
    return [
        Column("study_uid", String(64), nullable=False, index=True),
        Column("patient_pseudonym", String(64), nullable=False),
        Column("probability", Float, nullable=False),
        Column("level", String(16), nullable=False),
        Column("model_version", String(64), nullable=False),
        Column("threshold_version", String(64), nullable=False),
        Column("lesion_percent", Float),
        Column("top_features", JSON),
    ]


def _regional_columns() -> list[Column[Any]]:
    """Regional biomarkers of the learned lesion model (NULL: the model measures no zones)."""
    return [Column("ct_severity_score", Float), Column("bilateral", Boolean)]


def _change_columns(since: str) -> list[Column[Any]]:
    """Burden change since the ``prior``, the ``first`` or an ``earlier`` CT of the patient."""
    return [
        Column(f"{since}_study_uid", String(64)),
        Column(f"{since}_ct_time", DateTime(timezone=True)),
        Column(f"interval_{since}_days", Float),
        Column(f"lesion_from_{since}_percent", Float),
        Column(f"lesion_change_{since}_points", Float),
        Column(f"lesion_change_{since}_per_day", Float),
        Column(f"severity_change_{since}_points", Float),
        Column(f"severity_change_{since}_per_day", Float),
    ]


risks = Table(
    "risks",
    metadata,
    Column("risk_id", String(36), primary_key=True),
    *_scored_study_columns(),
    Column("completeness", String(32)),
    Column("scored_at", DateTime(timezone=True), nullable=False, index=True),
    Column("latency_s", Float),
    *_regional_columns(),
    # added with issue 15: the stored revision only ever grows (NULL in older rows: 0)
    Column("revision", Integer),
    # added with issue 16 (NULL in older rows and for a patient's first CT): the CT time, the
    # burden parts, the RSNA category and the change since the prior and the first CT
    Column("ct_time", DateTime(timezone=True)),
    Column("ggo_percent", Float),
    Column("consolidation_percent", Float),
    Column("rsna_category", String(16)),
    *_change_columns("prior"),
    *_change_columns("first"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String(36), primary_key=True),
    *_scored_study_columns(),
    Column("raised_at", DateTime(timezone=True), nullable=False, index=True),
    # added with escalation (issue 6); nullable, so older rows stay valid
    Column("kind", String(16)),
    Column("escalated_from", String(16)),
    Column("completeness", String(32)),
    Column("completeness_note", Text),
    Column("hospital", String(64)),
    *_regional_columns(),
    # added with the ED panels of issue 16 (NULL in older rows and for a first CT): the pattern,
    # and the change the alert reports ("earlier": for a worsening alert the earlier CT the rule
    # measured the rise from, otherwise the prior CT), with the line the ED reads
    Column("rsna_category", String(16)),
    Column("change_text", Text),
    Column("worsening_reasons", String(64)),
    Column("secondary_worsening", Boolean),
    *_change_columns("earlier"),
)

treatments = Table(
    "treatments",
    metadata,
    # issue 16: COVID-19 treatments from FHIR MedicationRequest / MedicationAdministration; only
    # the coded drug, its class, the start and the status (no dose, prescriber or note)
    Column("treatment_id", String(36), primary_key=True),
    Column("patient_pseudonym", String(64), nullable=False, index=True),
    Column("drug", String(32), nullable=False),
    Column("treatment_class", String(32), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("status", String(32), nullable=False),
    Column("given", Boolean, nullable=False),
    Column("source", String(32), nullable=False),
)

threshold_audit = Table(
    "threshold_audit",
    metadata,
    Column("audit_id", String(36), primary_key=True),
    Column("hospital", String(64), nullable=False, index=True),
    Column("changed_by", String(128), nullable=False),
    Column("role", String(32), nullable=False),
    Column("source", String(32), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False, index=True),
    Column("old_version", String(64)),
    Column("new_version", String(64), nullable=False),
    Column("old_policy", JSON),
    Column("new_policy", JSON, nullable=False),
    Column("reason", Text, nullable=False),
    Column("audit_event", JSON, nullable=False),
)

forecasts = Table(
    "forecasts",
    metadata,
    Column("forecast_id", String(64), primary_key=True),
    Column("hospital", String(64), nullable=False, index=True),
    Column("issued_at", DateTime(timezone=True), nullable=False, index=True),
    Column("day", Date, nullable=False),
    Column("expected", Float, nullable=False),
    Column("lower80", Float, nullable=False),
    Column("upper80", Float, nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("p_exceed", Float, nullable=False),
    # added with the capacity forecasts of issue 7; nullable, so older rows stay valid
    Column("unit", String(64)),
    Column("lower95", Float),
    Column("upper95", Float),
    Column("p_breach", Float),
    Column("breach_alert", Boolean),
    # ventilators next to ICU beds: "icu_beds" | "ventilators" (NULL in older rows: ICU beds),
    # and the census when the forecast was issued (the dashboards' occupancy history)
    Column("resource", String(16), index=True),
    Column("occupancy_now", Integer),
    Column("median", Float),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("topic", String(128), nullable=False, index=True),
    Column("stage", String(64), nullable=False),
    Column("reason_code", String(64), nullable=False, index=True),
    Column("payload", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("source_topic", String(128)),
    Column("source_partition", Integer),
    Column("source_offset", Integer),
    Column("at", DateTime(timezone=True), nullable=False),
)


def make_engine(url: str) -> Engine:
    """Engine for a store URL; a SQLite file gets its folder and write-ahead logging."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def create_schema(engine: Engine) -> None:
    """Create missing tables; add missing nullable columns to existing ones (no other change)."""
    metadata.create_all(engine)
    existing = inspect(engine)
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            have = {c["name"] for c in existing.get_columns(table.name)}
            for column in table.columns:
                if column.name not in have and column.nullable and not column.primary_key:
                    kind = column.type.compile(dialect=engine.dialect)
                    conn.execute(
                        text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
                    )


def _upsert(
    conn: Connection, table: Table, rows: Iterable[dict[str, Any]], newer_by: str | None = None
) -> None:
    """Insert or update ``rows`` by primary key.

    With ``newer_by``, a stored row is updated only when its ``newer_by`` column is not above
    the incoming one (NULL counts as 0).
    """
    rows = list(rows)
    if not rows:
        return
    key = [c.name for c in table.primary_key.columns]
    dialect = conn.dialect.name
    if dialect == "sqlite":
        stmt: Any = sqlite.insert(table)
    elif dialect == "postgresql":
        stmt = postgresql.insert(table)
    else:
        raise ValueError(f"store dialect {dialect!r} is not supported (use SQLite or PostgreSQL)")
    updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in key}
    where = None
    if newer_by is not None:
        stored, incoming = table.c[newer_by], stmt.excluded[newer_by]
        where = func.coalesce(stored, 0) <= func.coalesce(incoming, 0)
    conn.execute(stmt.on_conflict_do_update(index_elements=key, set_=updates, where=where), rows)


def upsert_study(conn: Connection, row: dict[str, Any]) -> None:
    """Insert or update a study's status."""
    _upsert(conn, studies, [row])


def upsert_risk(conn: Connection, row: dict[str, Any]) -> None:
    """Insert or update a risk by ``risk_id``, keeping the highest ``revision``.

    At-least-once delivery and a crash can bring an older revision after a newer one (a
    redelivered first score after a re-score): it never overwrites the newer row.
    """
    _upsert(conn, risks, [row], newer_by="revision")


def upsert_alert(conn: Connection, row: dict[str, Any]) -> None:
    """Insert or update an alert by ``alert_id``."""
    _upsert(conn, alerts, [row])


def upsert_treatment(conn: Connection, row: dict[str, Any]) -> None:
    """Insert or update a treatment by ``treatment_id`` (a later status replaces the earlier)."""
    _upsert(conn, treatments, [row])


def export_tables(conn: Connection) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The newest risk row of every scored study and every treatment, for the cohort export."""
    newest = (
        select(risks.c.study_uid, func.max(risks.c.scored_at).label("scored_at"))
        .group_by(risks.c.study_uid)
        .subquery()
    )
    study_rows = conn.execute(
        select(risks).join(
            newest,
            (risks.c.study_uid == newest.c.study_uid) & (risks.c.scored_at == newest.c.scored_at),
        )
    )
    treatment_rows = conn.execute(select(treatments))
    return [dict(r._mapping) for r in study_rows], [dict(r._mapping) for r in treatment_rows]


def patient_treatments(conn: Connection, pseudonym: str) -> list[dict[str, Any]]:
    """One patient's stored treatments, by start time."""
    query = (
        select(treatments)
        .where(treatments.c.patient_pseudonym == pseudonym)
        .order_by(treatments.c.started_at, treatments.c.drug)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def upsert_threshold_audit(conn: Connection, row: dict[str, Any]) -> None:
    """Insert or update a policy change's audit record by ``audit_id``."""
    _upsert(conn, threshold_audit, [row])


def recent_studies_per_day(conn: Connection, now: datetime, days: float = 7.0) -> float:
    """Studies scored or rejected per day over the ``days`` before ``now`` (the study volume)."""
    since = now - timedelta(days=days)
    count = conn.execute(
        select(func.count()).select_from(studies).where(studies.c.updated_at >= since)
    ).scalar_one()
    return float(count) / days


def upsert_forecast_rows(conn: Connection, rows: Iterable[dict[str, Any]]) -> None:
    """Insert or update forecast days by ``forecast_id``."""
    _upsert(conn, forecasts, rows)


def insert_dead_letter(conn: Connection, row: dict[str, Any]) -> None:
    r"""Append a dead letter (each failure is its own row).

    PostgreSQL's text holds no NUL character, and a binary message that was dead-lettered
    carries some in its payload: each is stored as the four characters ``\x00`` (without
    that, the poison chaos run's letters were refused by the store and dead-lettered again as
    ``store_unavailable``, their own reason lost).
    """
    clean = {k: v.replace("\x00", "\\x00") if isinstance(v, str) else v for k, v in row.items()}
    conn.execute(dead_letters.insert(), [clean])


def count_rows(conn: Connection, table: Table) -> int:
    """Number of rows in a store table."""
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
