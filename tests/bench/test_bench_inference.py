"""Lesion quantification speed: a 512x512x300 study through Triton (lesion_unet, its large
variant lesion_unet_large, lesion_threshold) and in process; slices per second of the slice
network; peak memory. Run on demand::

    CTRIAGE_TEST_PORT_OFFSET=600 .venv/bin/python -m pytest -m bench \\
        tests/bench/test_bench_inference.py -s

The study is the real P001 series (148 slices) mirrored along z and cut to 300 slices. Every
figure carries the machine's load average and the CPU seconds spent next to the wall time: on
a shared 2-core machine the wall time follows the neighbours, the CPU time much less.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from deploy.triton import TritonServer
from inference.biomarkers import CONSOLIDATION_HU, quantify_threshold
from inference.client import TritonQuantifier, TritonSlices
from inference.lungmask import close_and_fill, lung_mask
from inference.segmentation import (
    INPUT_SIZE,
    OnnxSegmenter,
    hu_to_unit,
    measure,
    segment_slices,
    segment_volume,
)
from inference.volume import load_series

pytestmark = pytest.mark.bench
SLICES = 300
RUNS = 3


class PeakRss:
    """Peak resident memory of a process and its children, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            self._stop.wait(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children so far.

    This test process is counted alone: its children are the services the fixtures started.
    """
    process = psutil.Process(pid)
    total = 0.0
    children = process.children(recursive=True) if pid != os.getpid() else []
    for p in (process, *children):
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def _timed(fn: Callable[[], object], pid: int, runs: int = RUNS) -> dict[str, Any]:
    """Best and median wall time of ``runs`` calls, CPU seconds per call, load average."""
    walls, cpus, loads = [], [], []
    for _ in range(runs):
        loads.append(os.getloadavg()[0])
        cpu = _cpu_s(pid)
        started = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - started)
        cpus.append(_cpu_s(pid) - cpu)
    return {
        "seconds_per_study_best": round(min(walls), 2),
        "seconds_per_study_median": round(float(np.median(walls)), 2),
        "slices_per_s_best": round(SLICES / min(walls), 1),
        "cpu_seconds_per_study_median": round(float(np.median(cpus)), 2),
        "load_average_1min_before_each_run": [round(v, 2) for v in loads],
    }


@pytest.fixture(scope="module")
def study(shared_data: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    volume = load_series(shared_data / "dicom" / "covid-ct-md" / "P001")
    hu = np.concatenate([volume.hu, volume.hu[::-1], volume.hu])[:SLICES]
    return np.ascontiguousarray(hu), volume.spacing_mm


def _server_pid(server: TritonServer) -> int:
    pid = server.pid_file.live_process()
    assert pid is not None
    return int(pid.pid)


def test_bench_study_through_triton(triton_server, study, record_result) -> None:
    hu, spacing = study
    pid = _server_pid(triton_server)
    numbers: dict[str, object] = {"study_shape_zyx": list(hu.shape), "runs": RUNS}
    for model in ("lesion_unet", "lesion_unet_large", "lesion_threshold"):
        quantifier = TritonQuantifier(triton_server.http_url, model_name=model, timeout_s=600)
        quantifier.quantify_array(hu[:40], spacing)  # warm-up
        with PeakRss(pid) as peak:
            timing = _timed(lambda q=quantifier: q.quantify_array(hu, spacing), pid)
        numbers[model] = timing | {"server_peak_rss_mb": round(peak.peak / 2**20)}
    slices = TritonSlices(triton_server.http_url, timeout_s=600)
    batch = np.random.default_rng(0).random((64, 1, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    slices(batch[:8])
    started = time.perf_counter()
    for start in range(0, 64, 16):
        slices(batch[start : start + 16])
    numbers["lesion_unet_onnx_slices_per_s"] = round(64 / (time.perf_counter() - started), 1)
    record_result("inference_triton", numbers)


def _whole_volume(hu: np.ndarray, spacing: tuple[float, float, float], fn: OnnxSegmenter) -> None:
    """The study path before the lung box (every step on the whole volume), for comparison."""
    lung = close_and_fill(lung_mask(hu, spacing), max(1, round(3.0 / min(spacing[1:]))))
    lesion, _ = segment_slices(hu_to_unit(hu), fn)
    measure(hu, spacing, lung, lesion & (hu <= CONSOLIDATION_HU[1]))


def test_bench_study_in_process(study, record_result) -> None:
    hu, spacing = study
    pid = os.getpid()
    numbers: dict[str, object] = {"study_shape_zyx": list(hu.shape), "runs": RUNS}
    batch = np.random.default_rng(0).random((64, 1, INPUT_SIZE, INPUT_SIZE), np.float32)
    for threads in (1, 2):
        segmenter = OnnxSegmenter(threads=threads)
        segmenter(batch[:4])
        network = _timed(lambda s=segmenter: [s(batch[i : i + 16]) for i in range(0, 64, 16)], pid)
        numbers[f"onnxruntime_{threads}_threads"] = {
            "network_slices_per_s_best": round(64 / network["seconds_per_study_best"], 1),
            "lesion_unet": _timed(lambda s=segmenter: segment_volume(hu, spacing, s), pid),
        }
    # what lesion_unet runs in Triton: both cores over the study's slabs and network batches,
    # one onnxruntime thread per batch (STUDY_THREADS=2, ORT_INTRA_OP_THREADS=1)
    per_batch = OnnxSegmenter(threads=1)
    numbers["lesion_unet_2_study_threads_1_onnxruntime_thread"] = _timed(
        lambda: segment_volume(hu, spacing, per_batch, threads=2), pid
    )
    numbers["lesion_unet_whole_volume_reference_2_threads"] = _timed(
        lambda: _whole_volume(hu, spacing, OnnxSegmenter(threads=2)), pid, runs=1
    )
    numbers["lesion_threshold"] = _timed(lambda: quantify_threshold(hu, spacing), pid)
    numbers["peak_rss_mb_this_process"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    record_result("inference_in_process", numbers)


class _TimedSegmenter(OnnxSegmenter):
    """The network with its CPU seconds and input pixels counted (crops or whole slices)."""

    def __init__(self, crops: bool) -> None:
        super().__init__(threads=1)
        self.accepts_crops = crops and self.accepts_crops
        self.cpu_s, self.pixels = 0.0, 0

    def __call__(self, slices: np.ndarray) -> np.ndarray:
        started = time.process_time()
        logits = super().__call__(slices)
        self.cpu_s += time.process_time() - started
        self.pixels += slices.shape[0] * slices.shape[2] * slices.shape[3]
        return logits


def test_bench_crop_margin(shared_data: Path, record_result) -> None:
    """Lung crops before the network: CPU saved and lesion voxels changed, by context margin.

    Each batch of slices goes through the network cropped to its lungs plus ``margin`` input
    pixels (docs/imaging-performance.md); the reference runs whole slices. Real P001 and
    normal001, and two 256 x 256 phantoms (SYNTHETIC).
    """
    from triage.cohort.phantom import PhantomGeometry, render_volume, sample_phantom

    cases: dict[str, tuple[np.ndarray, tuple[float, float, float]]] = {}
    for name in ("P001", "normal001"):
        volume = load_series(shared_data / "dicom" / "covid-ct-md" / name)
        cases[name] = (volume.hu, volume.spacing_mm)
    geometry = PhantomGeometry(slices=32, matrix=256)
    for seed in (3, 8):
        hu, _, _ = render_volume(sample_phantom(seed, 0, geometry, 0.2, 0.3, obese=False))
        cases[f"phantom_seed{seed}_SYNTHETIC"] = (hu, geometry.spacing_mm)
    numbers: dict[str, object] = {"margins_input_px": [16, 24, 32, 40, 48]}
    for name, (hu, spacing) in cases.items():
        whole = _TimedSegmenter(crops=False)
        reference = segment_volume(hu, spacing, whole).classes > 0
        row: dict[str, object] = {
            "whole_slices_network_cpu_s": round(whole.cpu_s, 2),
            "lesion_voxels": int(reference.sum()),
        }
        for margin in (16, 24, 32, 40, 48):
            cropped = _TimedSegmenter(crops=True)
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr("inference.segmentation.CROP_MARGIN", margin)
                lesion = segment_volume(hu, spacing, cropped).classes > 0
            row[f"margin_{margin}"] = {
                "network_cpu_s": round(cropped.cpu_s, 2),
                "pixels_vs_whole": round(cropped.pixels / whole.pixels, 3),
                "lesion_voxels_different": int((lesion != reference).sum()),
            }
        print(name, row)
        numbers[name] = row
    record_result("lesion_crop_margin", numbers)
