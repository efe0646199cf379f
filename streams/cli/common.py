"""Helpers shared by the ``ctriage`` command modules: logging set-up and number formatting."""

from __future__ import annotations

import logging
from typing import Any


def configure_logging(level: str) -> None:
    """Log to stderr at ``level`` (a command runs in the foreground: the CLI owns logging)."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def fmt(value: Any) -> str:
    """A table cell: ``n/a`` for None, three decimals for a float, else ``str``."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
