"""The ingress quarantine: rejected originals kept where only the ingress service can read them.

A rejected FHIR resource was not pseudonymised, so its original (names, birth date, raw ids)
never goes downstream: the dead letter names a file here instead. The folder is created
``0700`` and each file ``0600`` (whatever the umask), and it is bounded: at most ``max_files``
files and ``max_bytes`` bytes, the oldest removed first (a dead letter may then name a file that
is gone; the dead letter itself, with its reason, stays). ``max_files=0`` keeps nothing. A dry
run has no quarantine at all. See docs/security.md.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections import deque
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


class Quarantine:
    """A bounded folder of rejected originals (thread-safe: the HTTP endpoint uses threads)."""

    def __init__(self, root: Path, max_files: int = 1000, max_bytes: int = 256 * 2**20) -> None:
        if max_files < 0 or max_bytes < 0:
            raise ValueError("quarantine bounds must not be negative")
        self.root = root
        self.max_files = max_files
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._held: deque[tuple[Path, int]] | None = None  # oldest first, read on first use
        self._bytes = 0

    def hold(self, original: Any) -> str | None:
        """Keep ``original`` (bytes, text or JSON); return its file name, None if not kept."""
        if original is None or self.max_files == 0:
            return None
        data = _as_bytes(original)
        if len(data) > self.max_bytes:
            logger.warning(
                "a rejected original of %d bytes exceeds the quarantine (%d bytes): not kept",
                len(data),
                self.max_bytes,
            )
            return None
        with self._lock:
            held = self._load()
            self._make_room(held, len(data))
            path = self.root / f"{uuid.uuid4()}.json"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(path, FILE_MODE)  # whatever the umask
            held.append((path, len(data)))
            self._bytes += len(data)
        return path.name

    def usage(self) -> tuple[int, int]:
        """Files and bytes held now."""
        with self._lock:
            held = self._load()
            return len(held), self._bytes

    def _load(self) -> deque[tuple[Path, int]]:
        if self._held is None:
            self.root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            os.chmod(self.root, DIR_MODE)
            files = [p for p in self.root.glob("*.json") if p.is_file()]
            sized = sorted((p.stat().st_mtime_ns, p, p.stat().st_size) for p in files)
            self._held = deque((p, size) for _, p, size in sized)
            self._bytes = sum(size for _, _, size in sized)
        return self._held

    def _make_room(self, held: deque[tuple[Path, int]], incoming: int) -> None:
        removed = 0
        while held and (len(held) >= self.max_files or self._bytes + incoming > self.max_bytes):
            path, size = held.popleft()
            path.unlink(missing_ok=True)
            self._bytes -= size
            removed += 1
        if removed:
            logger.warning(
                "quarantine full (%d files, %d bytes at most): removed the %d oldest",
                self.max_files,
                self.max_bytes,
                removed,
            )


def _as_bytes(original: Any) -> bytes:
    if isinstance(original, bytes):
        return original
    if isinstance(original, str):
        return original.encode("utf-8", errors="replace")
    return json.dumps(original).encode("utf-8")
