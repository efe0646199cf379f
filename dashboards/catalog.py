"""Every dashboard the project ships, by name: what ``ctriage dashboards`` builds and pushes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dashboards.ed_triage import build_ed_triage

#: Dashboard name -> function returning its JSON model. Add the ICU forecast and admin boards here.
DASHBOARDS: dict[str, Callable[[], dict[str, Any]]] = {
    "ed-triage": build_ed_triage,
}
