"""Quiet logs during a broker outage, and one line when the broker answers again.

A broker outage made the worker's Kafka clients (aiokafka, Faust's consumer and producer) write
about a hundred ERROR lines a second, then nothing when the broker came back (issue 15). The
filter below lets each distinct message of those loggers (same logger, level and format string)
through once per ``window_s``, counts what it holds back, and when one of those loggers speaks
below WARNING again after held-back lines (the consumer rejoins its group, fetches resume) it
writes one "Kafka reachable again" line with the outage's length and how many lines it held.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: Loggers of the Kafka clients whose repeated warnings and errors are limited.
KAFKA_CLIENT_LOGGERS = ("aiokafka", "kafka", "faust.transport", "faust.tables")


class OutageLogLimiter(logging.Filter):
    """A handler filter: Kafka-client warnings and errors at most once per message and window."""

    def __init__(
        self,
        window_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        prefixes: tuple[str, ...] = KAFKA_CLIENT_LOGGERS,
    ) -> None:
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self.prefixes = prefixes
        self._last_passed: dict[tuple[str, int, str], float] = {}
        self._held = 0
        self._outage_since: float | None = None

    def _is_client(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass or hold ``record``; after an outage, announce the recovery once."""
        decided = getattr(record, "_outage_limited", None)  # a second handler: same answer
        if decided is None:
            decided = self._decide(record)
            record._outage_limited = decided
        return bool(decided)

    def _decide(self, record: logging.LogRecord) -> bool:
        if not self._is_client(record.name):
            return True
        now = self.clock()
        if record.levelno < logging.WARNING:
            if self._held:
                self._announce_recovery(record, now)
            self._outage_since = None
            return True
        if self._outage_since is None:
            self._outage_since = now
        key = (record.name, record.levelno, str(record.msg))
        last = self._last_passed.get(key)
        if last is not None and now - last < self.window_s:
            self._held += 1
            return False
        self._last_passed[key] = now
        return True

    def _announce_recovery(self, record: logging.LogRecord, now: float) -> None:
        since = now if self._outage_since is None else self._outage_since
        held, self._held, self._outage_since = self._held, 0, None
        self._last_passed.clear()
        # rewrite the passing record's text: one line, on the same handler, no re-entry
        text = record.getMessage()
        record.msg = "Kafka reachable again after %.0fs of errors (%d repeated lines held back); %s"
        record.args = (now - since, held, text)
        record.levelno, record.levelname = logging.WARNING, "WARNING"


def limit_kafka_client_logs(handlers: list[logging.Handler], window_s: float = 30.0) -> None:
    """Install one :class:`OutageLogLimiter` on each of ``handlers`` (the root's, once set up)."""
    limiter = OutageLogLimiter(window_s)
    for handler in handlers:
        handler.addFilter(limiter)
