"""Every dashboard the project ships, by name: what ``ctriage dashboards`` builds and pushes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dashboards.admin import build_admin
from dashboards.ed_triage import build_ed_triage
from dashboards.icu_forecast import build_icu_forecast
from dashboards.pipeline_health import build_pipeline_health

#: Dashboard name -> function returning its JSON model, one per kind of user.
DASHBOARDS: dict[str, Callable[[], dict[str, Any]]] = {
    "ed-triage": build_ed_triage,
    "icu-forecast": build_icu_forecast,
    "admin": build_admin,
    "pipeline-health": build_pipeline_health,
}
