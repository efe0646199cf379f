"""Lesion quantification speed: a 512x512x300 study through Triton (lesion_unet, lesion_threshold)
and in process; slices per second of the slice network; peak memory. Run on demand::

    CTRIAGE_TEST_PORT_OFFSET=600 .venv/bin/python -m pytest -m bench \
        tests/bench/test_bench_inference.py -s

The study is the real P001 series (148 slices) mirrored along z and cut to 300 slices.
"""

from __future__ import annotations

import resource
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from deploy.triton import TritonServer
from inference.biomarkers import quantify_threshold
from inference.client import TritonQuantifier, TritonSlices
from inference.segmentation import INPUT_SIZE, OnnxSegmenter, segment_volume
from inference.volume import load_series

pytestmark = pytest.mark.bench
SLICES = 300


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
    numbers: dict[str, object] = {"study_shape_zyx": list(hu.shape), "runs": 2}
    for model in ("lesion_unet", "lesion_threshold"):
        quantifier = TritonQuantifier(triton_server.http_url, model_name=model, timeout_s=600)
        quantifier.quantify_array(hu[:40], spacing)  # warm-up
        times = []
        with PeakRss(_server_pid(triton_server)) as peak:
            for _ in range(2):
                started = time.perf_counter()
                quantifier.quantify_array(hu, spacing)
                times.append(time.perf_counter() - started)
        numbers[model] = {
            "seconds_per_study": round(min(times), 2),
            "slices_per_s": round(SLICES / min(times), 1),
            "server_peak_rss_mb": round(peak.peak / 2**20),
        }
    slices = TritonSlices(triton_server.http_url, timeout_s=600)
    batch = np.random.default_rng(0).random((64, 1, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    slices(batch[:8])
    started = time.perf_counter()
    for start in range(0, 64, 16):
        slices(batch[start : start + 16])
    numbers["lesion_unet_onnx_slices_per_s"] = round(64 / (time.perf_counter() - started), 1)
    record_result("inference_triton", numbers)


def test_bench_study_in_process(study, record_result) -> None:
    hu, spacing = study
    segmenter = OnnxSegmenter()
    started = time.perf_counter()
    segment_volume(hu, spacing, segmenter)
    unet_s = time.perf_counter() - started
    started = time.perf_counter()
    quantify_threshold(hu, spacing)
    threshold_s = time.perf_counter() - started
    record_result(
        "inference_in_process",
        {
            "study_shape_zyx": list(hu.shape),
            "lesion_unet_seconds_per_study": round(unet_s, 2),
            "lesion_unet_slices_per_s": round(SLICES / unet_s, 1),
            "threshold_seconds_per_study": round(threshold_s, 2),
            "peak_rss_mb_this_process": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            ),
        },
    )
