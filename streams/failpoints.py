"""Named crash points for fault-injection tests (``CTRIAGE_WORKER__FAILPOINTS``).

A crash test sets a point's name (``alert_written_ahead``, ``alert_sent``); the worker SIGKILLs
itself the first time it gets there, as a machine failing at the worst moment would. A fault
(``unfetch_partition``, ``read_offset_ahead``) instead plays, once, a state the stream library
was seen (or is suspected) to leave behind (:func:`play_consumer_faults`). Empty in
production: then both are a membership test on an empty tuple. The settings accept only the
names the code defines.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from streams.consumer_offsets import READ_AHEAD
from streams.settings import WorkerSettings

logger = logging.getLogger(__name__)


def failpoint(worker: WorkerSettings, name: str) -> None:
    """SIGKILL this process here if the settings name this point."""
    if name in worker.failpoints:
        logger.critical("failpoint %s reached: killing this worker (SIGKILL)", name)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)


_REACHED: set[str] = set()


def fault_once(worker: WorkerSettings, name: str) -> bool:
    """True the first time this process reaches a fault the settings name (then never again)."""
    if name not in worker.failpoints or name in _REACHED:
        return False
    _REACHED.add(name)
    logger.critical("fault %s reached: playing it once", name)
    return True


def play_consumer_faults(worker: WorkerSettings, consumer: Any, tp: Any) -> None:
    """Leave partition ``tp`` of Faust's ``consumer`` in a state seen in the chaos runs (once).

    ``unfetch_partition``: out of Faust's fetch set (paused), as a takeover once left
    ``ct.quantification-1``. ``read_offset_ahead``: Faust's read offset far past the records,
    now and again right after the consumer's first seek back, so that Faust drops what it
    fetches of the partition twice without a word (its ``_drain_messages`` drops a record below
    the read offset): the sequence of the never-committed partition's stall (sought back once
    from its end, then silent). The consumer's watchdogs must bring the partition back
    (``streams/faust_consumer.py``).
    """
    if fault_once(worker, "unfetch_partition"):
        consumer.pause_partitions({tp})
    if fault_once(worker, "read_offset_ahead"):
        consumer._read_offset[tp] = READ_AHEAD
        consumer.faults_read_ahead.add(tp)
