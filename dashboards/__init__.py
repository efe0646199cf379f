"""Public API of ``dashboards``: what other packages import (deep imports stay inside)."""

from dashboards.catalog import DASHBOARDS
from dashboards.client import DEFAULT_TIMEOUT_S, push_dashboard
from dashboards.exceptions import DashboardPushError
from dashboards.store import (
    create_schema,
    export_tables,
    insert_dead_letter,
    make_engine,
    patient_treatments,
    recent_studies_per_day,
    studies,
    upsert_alert,
    upsert_forecast_rows,
    upsert_risk,
    upsert_study,
    upsert_threshold_audit,
    upsert_treatment,
)

__all__ = [
    "DASHBOARDS",
    "DEFAULT_TIMEOUT_S",
    "DashboardPushError",
    "create_schema",
    "export_tables",
    "insert_dead_letter",
    "make_engine",
    "patient_treatments",
    "push_dashboard",
    "recent_studies_per_day",
    "studies",
    "upsert_alert",
    "upsert_forecast_rows",
    "upsert_risk",
    "upsert_study",
    "upsert_threshold_audit",
    "upsert_treatment",
]
