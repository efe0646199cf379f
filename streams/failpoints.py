"""Named crash points for fault-injection tests (``CTRIAGE_WORKER__FAILPOINTS``).

A crash test sets a point's name (``alert_written_ahead``, ``alert_sent``); the worker SIGKILLs
itself the first time it gets there, as a machine failing at the worst moment would. Empty in
production: then :func:`failpoint` is a membership test on an empty tuple. The settings accept
only the names the code defines.
"""

from __future__ import annotations

import logging
import os
import signal

from streams.settings import WorkerSettings

logger = logging.getLogger(__name__)


def failpoint(worker: WorkerSettings, name: str) -> None:
    """SIGKILL this process here if the settings name this point."""
    if name in worker.failpoints:
        logger.critical("failpoint %s reached: killing this worker (SIGKILL)", name)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
