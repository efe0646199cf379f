import threading

import numpy as np
import pytest

from inference.slabs import along_z, run_all, z_slabs


@pytest.mark.parametrize(("depth", "parts"), [(300, 2), (7, 3), (2, 5), (1, 1), (10, 1)])
def test_z_slabs_cover_the_depth_once_in_order(depth: int, parts: int) -> None:
    slabs = z_slabs(depth, parts)
    assert len(slabs) == min(parts, depth)
    covered = [z for s in slabs for z in range(s.start, s.stop)]
    assert covered == list(range(depth))
    sizes = [s.stop - s.start for s in slabs]
    assert max(sizes) - min(sizes) <= 1


def test_run_all_keeps_the_order_of_the_jobs() -> None:
    jobs = [lambda i=i: i * i for i in range(9)]
    assert run_all(jobs, threads=1) == run_all(jobs, threads=3) == [i * i for i in range(9)]


def test_run_all_runs_jobs_at_the_same_time() -> None:
    """Two jobs that each wait for the other finish only when they run at once."""
    both = threading.Barrier(2, timeout=10)
    assert run_all([both.wait, both.wait], threads=2) in ([0, 1], [1, 0])


def test_run_all_with_one_thread_runs_in_the_caller() -> None:
    caller = threading.get_ident()
    assert run_all([threading.get_ident, threading.get_ident], threads=1) == [caller, caller]


def test_a_failing_job_fails_the_call() -> None:
    def fails() -> int:
        raise ValueError("bad slab")

    with pytest.raises(ValueError, match="bad slab"):
        run_all([lambda: 1, fails], threads=2)


@pytest.mark.parametrize(("depth", "threads"), [(7, 3), (7, 1), (1, 2), (0, 2)])
def test_along_z_concatenates_the_ranges_in_order(depth: int, threads: int) -> None:
    volume = np.arange(depth * 4).reshape(depth, 2, 2)
    assert np.array_equal(along_z(lambda z: volume[z] * 2, depth, threads), volume * 2)


def test_along_z_in_one_range_returns_the_result_itself() -> None:
    volume = np.zeros((5, 2, 2))
    assert along_z(lambda z: volume, 5, threads=1) is volume
