"""Masks of a quantified study kept on disk for later stages (a claim check, never in Kafka).

The worker asks the study model for its masks only when something downstream needs them (the
PACS write-back): the SEG it stores must show what the model that produced the numbers saw,
not a re-computation by another method. The file is a compressed ``.npz`` with ``lung`` and
``lesion`` as bit-packed booleans plus their shape, named from a hash of the study UID and the
model (never the UID itself), and removed by the stage that consumed it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from inference.exceptions import InvalidVolume


def masks_path(folder: Path, study_uid: str, model: str, version: str) -> Path:
    """Where the masks of ``study_uid`` by ``model``/``version`` live under ``folder``."""
    digest = hashlib.sha256(f"{study_uid}/{model}/{version}".encode()).hexdigest()[:32]
    return folder / f"{digest}.masks.npz"


def save_masks(path: Path, lung: np.ndarray, lesion: np.ndarray) -> Path:
    """Write boolean (z, y, x) ``lung`` and ``lesion`` atomically (temp file, then rename)."""
    if lung.shape != lesion.shape or lung.ndim != 3:
        raise InvalidVolume(f"masks must be two (z, y, x) arrays, got {lung.shape}/{lesion.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as f:
        np.savez_compressed(
            f,
            shape=np.asarray(lung.shape, dtype=np.int64),
            lung=np.packbits(lung.astype(bool), axis=None),
            lesion=np.packbits(lesion.astype(bool), axis=None),
        )
    os.replace(partial, path)
    return path


def load_masks(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(lung, lesion)`` booleans written by :func:`save_masks`."""
    with np.load(path, allow_pickle=False) as data:
        shape = tuple(int(v) for v in data["shape"])
        count = int(np.prod(shape))
        lung = np.unpackbits(data["lung"], count=count).reshape(shape).astype(bool)
        lesion = np.unpackbits(data["lesion"], count=count).reshape(shape).astype(bool)
    return lung, lesion
