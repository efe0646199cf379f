"""Helpers shared by the ``ctriage`` command modules: logging, number formatting, settings."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.settings import Settings
    from triage.fhir import Pseudonymiser


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


def pseudonymiser(settings: Settings) -> Pseudonymiser:
    """The ingress pseudonymiser with the configured key and key version."""
    from triage.fhir import Pseudonymiser

    key = settings.pseudonym.key.get_secret_value().encode()
    return Pseudonymiser(key, settings.pseudonym.key_version)
