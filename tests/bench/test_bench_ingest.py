"""Ingestion numbers: real series -> volume, C-STORE throughput, last instance -> study event.

Run: CTRIAGE_TEST_PORT_OFFSET=100 .venv/bin/pytest -m bench -s tests/bench/test_bench_ingest.py
"""

from __future__ import annotations

import statistics
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE, StoragePresentationContexts

from inference.volume import load_series
from streams.sources.dicom_receiver import DicomReceiver, StableStudy
from streams.sources.study_store import StudyStore

pytestmark = pytest.mark.bench

STABILITY_S = 1.0


@pytest.fixture(scope="module")
def p001(shared_data: Path) -> Path:
    return shared_data / "dicom" / "covid-ct-md" / "P001"


def test_bench_real_series_to_volume(p001: Path, record_result) -> None:  # noqa: ANN001
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        volume = load_series(p001)
        seconds.append(time.perf_counter() - started)
    tracemalloc.start()
    load_series(p001)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    record_result(
        "ingest_series_to_volume",
        {
            "series": "covid-ct-md/P001 (148 slices 512x512, JPEG Lossless SV1)",
            "shape": list(volume.hu.shape),
            "seconds_median": round(statistics.median(seconds), 3),
            "seconds_all": [round(s, 3) for s in seconds],
            "peak_traced_mb": round(peak / 2**20, 1),
            "volume_mb": round(volume.hu.nbytes / 2**20, 1),
        },
    )


def test_bench_cstore_receiver(
    p001: Path,
    tmp_path: Path,
    record_result,
    receiver_address: tuple[str, int],  # noqa: ANN001
) -> None:
    aet, port = receiver_address
    stable: list[StableStudy] = []
    done = threading.Event()

    def on_stable(study: StableStudy) -> None:
        stable.append(study)
        done.set()

    receiver = DicomReceiver(
        StudyStore(tmp_path / "store"),
        on_stable=on_stable,
        on_rejected=lambda letter: None,
        ae_title=aet,
        port=port,
        stability_s=STABILITY_S,
        check_interval_s=0.05,
    )
    datasets = [dcmread(f) for f in sorted(p001.iterdir())]
    ae = AE(ae_title="BENCH")
    ae.maximum_pdu_size = 0
    for context in StoragePresentationContexts:
        ae.add_requested_context(
            context.abstract_syntax, [str(datasets[0].file_meta.TransferSyntaxUID)]
        )
    receiver.start()
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title=aet)
        assert assoc.is_established
        started = time.perf_counter()
        for ds in datasets:
            assert assoc.send_c_store(ds).Status == 0x0000
        sent_s = time.perf_counter() - started
        assoc.release()
        assert done.wait(30)
    finally:
        receiver.stop()
    [study] = stable
    assert study.arrival.instances == len(datasets)
    mb = sum(f.stat().st_size for f in p001.iterdir()) / 2**20
    record_result(
        "ingest_cstore_receiver",
        {
            "series": "covid-ct-md/P001 (148 instances, JPEG Lossless, one association, loopback)",
            "instances": len(datasets),
            "seconds": round(sent_s, 3),
            "instances_per_s": round(len(datasets) / sent_s, 1),
            "mb_per_s": round(mb / sent_s, 1),
            "stability_s": STABILITY_S,
            "last_instance_to_event_s": round(study.waited_s, 3),
            "event_overhead_beyond_stability_s": round(study.waited_s - STABILITY_S, 3),
        },
    )
