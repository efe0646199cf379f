"""Untrusted DICOM is parsed in a child process: a decoder crash or blow-up costs one study.

The child has an address-space limit (``RLIMIT_AS``) and a wall-clock budget. When it dies (a
segfault in a C decoder, the kernel's answer to the limit, a hang) the study is refused with
``reader_crashed``, ``resource_limit`` or ``reader_timeout``, and a fresh child serves the next
study. The volume comes back to the parent by pickling (about 0.1 s for 150 MB). The child
exits when the process that made it dies (even by SIGKILL), so the forkserver and the resource
tracker exit with it: a killed worker leaves no process behind.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import resource
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inference.exceptions import SeriesRejected, SeriesRejectionReason
from inference.volume import CtVolume, VolumeLimits, load_series

logger = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT_MB = 6144
DEFAULT_TIMEOUT_S = 300.0


#: How often the reader child checks that the process that made it is still alive.
OWNER_POLL_S = 0.5


def _exit_when_gone(owner_pid: int) -> None:
    # The child's parent is the forkserver, not the owner, so PR_SET_PDEATHSIG cannot tell it
    # that the owner (the worker) died: a SIGKILLed worker used to leave the child, the
    # forkserver and the resource tracker alive. Once the child exits, the forkserver and the
    # tracker see their pipes close and exit too.
    while True:
        try:
            os.kill(owner_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass  # a pid reused by another user's process: the owner is gone as well
        time.sleep(OWNER_POLL_S)


def _start_child(memory_limit_mb: int, owner_pid: int) -> None:
    limit = memory_limit_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    threading.Thread(target=_exit_when_gone, args=(owner_pid,), daemon=True).start()


def _ready() -> int:
    """What :meth:`SandboxedReader.start` runs: the child is up with the reader imported."""
    return os.getpid()


def _call(func: Callable[..., Any], *args: Any) -> Any:
    try:
        return func(*args)
    except MemoryError as e:
        raise SeriesRejected(
            SeriesRejectionReason.RESOURCE_LIMIT, f"reading needed more memory than allowed: {e}"
        ) from None


class SandboxedReader:
    """Runs :func:`load_series` (or any picklable reader) in a memory-limited child process.

    Thread-safe: calls are serialised on the one child (a worker reads one study at a time).
    """

    def __init__(
        self,
        memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        limits: VolumeLimits | None = None,
    ) -> None:
        self.memory_limit_mb = memory_limit_mb
        self.timeout_s = timeout_s
        self.limits = limits or VolumeLimits()
        self._lock = threading.Lock()
        self._pool: cf.ProcessPoolExecutor | None = None

    def _executor(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: the worker process runs threads (Kafka clients, the event loop), and
            # forking a threaded process can deadlock the child
            self._pool = cf.ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("forkserver"),
                initializer=_start_child,
                initargs=(self.memory_limit_mb, os.getpid()),
            )
        return self._pool

    def _discard(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()  # a hung child does not answer a polite shutdown
            pool.shutdown(wait=False, cancel_futures=True)

    def start(self) -> threading.Thread:
        """Start the child in the background, so the first study does not wait for it.

        A process starts the forkserver, the forkserver the child, and the child imports the
        reader (numpy, pydicom, the decoders): about 1-4 s on 2 cores, which the first study
        after a worker start paid in its load time (5.7 s against 2.0 s for the next ones,
        docs/imaging-performance.md). A study that arrives meanwhile waits on the same lock.
        """
        thread = threading.Thread(target=self.run, args=(_ready,), name="reader-start", daemon=True)
        thread.start()
        return thread

    def load_series(self, path: Path) -> CtVolume:
        """Load the series under ``path`` in the child; raise ``SeriesRejected`` on any failure."""
        return self.run(load_series, Path(path), self.limits)

    def run(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run ``func(*args)`` in the child with the limits; typed rejection when it dies."""
        with self._lock:
            future = self._executor().submit(_call, func, *args)
            try:
                return future.result(timeout=self.timeout_s)
            except cf.TimeoutError:
                self._discard()
                raise SeriesRejected(
                    SeriesRejectionReason.READER_TIMEOUT,
                    f"reading took longer than {self.timeout_s:.0f}s; the reader was stopped",
                ) from None
            except cf.process.BrokenProcessPool:
                self._discard()
                raise SeriesRejected(
                    SeriesRejectionReason.READER_CRASHED,
                    "the DICOM reader process died (decoder crash or memory limit "
                    f"{self.memory_limit_mb} MB)",
                ) from None

    def close(self) -> None:
        """Stop the child process."""
        with self._lock:
            self._discard()
