"""The sandboxed reader: same volume as in process; a crash, a memory blow-up or a hang in the
child costs one study (typed rejection) and the next study is read by a fresh child."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from dicom_factory import write_ct_series

from inference.exceptions import SeriesRejected, SeriesRejectionReason
from inference.sandbox import SandboxedReader
from inference.volume import load_series

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("series")
    write_ct_series(folder, 12)
    return folder


@pytest.fixture
def reader():
    sandbox = SandboxedReader(memory_limit_mb=1024, timeout_s=60)
    yield sandbox
    sandbox.close()


def test_child_reads_the_same_volume(reader: SandboxedReader, series: Path) -> None:
    here = load_series(series)
    there = reader.load_series(series)
    assert np.array_equal(here.hu, there.hu)
    assert there.spacing_mm == here.spacing_mm


def test_typed_rejections_still_come_back(reader: SandboxedReader, tmp_path: Path) -> None:
    (tmp_path / "x.dcm").write_bytes(b"not dicom at all")
    with pytest.raises(SeriesRejected) as info:
        reader.load_series(tmp_path)
    assert info.value.reason == SeriesRejectionReason.NOT_DICOM


def test_a_crashing_decoder_costs_one_study(reader: SandboxedReader, series: Path) -> None:
    with pytest.raises(SeriesRejected) as info:
        reader.run(os.abort)
    assert info.value.reason == SeriesRejectionReason.READER_CRASHED
    assert reader.load_series(series).hu.shape == (12, 32, 32)


def test_memory_blow_up_is_refused(reader: SandboxedReader, series: Path) -> None:
    with pytest.raises(SeriesRejected) as info:
        reader.run(np.ones, (2**28,))  # 2 GiB of float64, over the 1 GiB limit
    assert info.value.reason == SeriesRejectionReason.RESOURCE_LIMIT
    assert reader.load_series(series).hu.shape == (12, 32, 32)


def test_a_hung_reader_is_stopped(series: Path) -> None:
    sandbox = SandboxedReader(memory_limit_mb=1024, timeout_s=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(SeriesRejected) as info:
            sandbox.run(time.sleep, 30)
        assert info.value.reason == SeriesRejectionReason.READER_TIMEOUT
        assert time.monotonic() - started < 20
        assert sandbox.load_series(series).hu.shape == (12, 32, 32)
    finally:
        sandbox.close()


_OWNER = """
import os, sys, time
from inference.sandbox import SandboxedReader
if __name__ == "__main__":
    reader = SandboxedReader(memory_limit_mb=2048, timeout_s=30)
    print(reader.run(os.getpid), flush=True)
    time.sleep(120)
"""


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren, ...), from ``/proc``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found.extend(frontier)
    return found


def test_children_die_with_a_killed_owner(tmp_path):
    """A SIGKILLed worker leaves no reader child, forkserver or resource tracker behind."""
    import signal
    import subprocess
    import sys

    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )  # fmt: skip
    try:
        assert owner.stdout is not None
        child_pid = int(owner.stdout.readline())
        children = _descendants(owner.pid)
        assert child_pid in children and len(children) >= 3, children
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in children):
        time.sleep(0.2)
    alive = [p for p in children if Path(f"/proc/{p}").exists()]
    for pid in alive:  # ours to clean up, so the suite leaks nothing even when this fails
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"processes left behind by the killed owner: {alive}"


def test_start_brings_the_child_up_before_the_first_study(
    reader: SandboxedReader, series: Path
) -> None:
    """A worker starts its reader at start-up: the first study is read by a child that was
    already running (it paid 3-4 s of process start and imports in its load time before)."""
    reader.start().join(timeout=60)
    asked = time.time()
    child = psutil.Process(reader.run(os.getpid))
    assert child.pid != os.getpid() and child.create_time() < asked
    assert reader.load_series(series).hu.shape[0] == 12
    assert reader.run(os.getpid) == child.pid  # the same child reads on
