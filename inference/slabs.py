"""Slabs of a study on several cores: independent z ranges or slice batches in threads.

numpy, scipy.ndimage and onnxruntime release the GIL while they compute, so threads over work
that does not depend on each other (slice-wise morphology on z ranges, network batches) use the
cores of one process without copying the volume. ``threads=1`` runs everything in the caller, in
order: results are the same either way (every split here is exact).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

import numpy as np

A = TypeVar("A")
T = TypeVar("T")


def z_slabs(depth: int, parts: int) -> list[slice]:
    """``parts`` contiguous, nearly equal z ranges covering ``range(depth)`` (fewer when short)."""
    parts = max(1, min(parts, depth))
    bounds = [round(i * depth / parts) for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def run_all(jobs: Sequence[Callable[[], T]], threads: int) -> list[T]:
    """Results of ``jobs`` in order, computed by up to ``threads`` threads.

    Jobs must not themselves call :func:`run_all` with a pool that could be full of their own
    callers; the study path never nests them.
    """
    if threads <= 1 or len(jobs) <= 1:
        return [job() for job in jobs]
    with ThreadPoolExecutor(max_workers=min(threads, len(jobs))) as pool:
        return list(pool.map(lambda job: job(), jobs))


def run_each(fn: Callable[[A], T], items: Sequence[A], threads: int) -> list[T]:
    """``[fn(item) for item in items]``, computed by up to ``threads`` threads."""
    return run_all([partial(fn, item) for item in items], threads)


def along_z(fn: Callable[[slice], np.ndarray], depth: int, threads: int) -> np.ndarray:
    """``fn`` of each z range of ``range(depth)``, concatenated along z (one call: no copy)."""
    slabs = z_slabs(depth, threads)
    if len(slabs) <= 1:
        return fn(slice(0, depth))
    return np.concatenate(run_each(fn, slabs, threads))
