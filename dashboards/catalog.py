"""Every dashboard the project ships, by name: what ``ctriage dashboards`` builds and pushes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dashboards.ed_triage import build_ed_triage
from dashboards.icu_forecast import build_icu_forecast

#: Dashboard name -> function returning its JSON model. Add the ICU forecast and admin boards here.
DASHBOARDS: dict[str, Callable[[], dict[str, Any]]] = {
    "ed-triage": build_ed_triage,
    "icu-forecast": build_icu_forecast,
}
