"""From the PACS to a risk record: Orthanc C-STOREs a CT study to our receiver, the receiver
announces it on ``ct.studies``, the worker quantifies it on Triton (``lesion_unet``, the default)
and scores it, and the SEG it stores back holds that model's masks.

Every part is real: Orthanc, the pynetdicom receiver, Kafka, Triton and the Faust worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaConsumer
from pydicom import dcmread
from stream_checks import start_group_at_end

from dashboards import store
from deploy.orthanc import OrthancServer
from inference.segmentation import OnnxSegmenter, segment_volume
from inference.volume import load_series
from streams import topics as t
from streams.demo import OutputCollector, WorkerProcess
from streams.records import CtStudy
from streams.settings import Settings
from streams.sources.dicom_receiver import DicomReceiver
from streams.sources.publish import StudyPublisher
from streams.sources.study_store import StudyStore
from triage.cohort import generate_cohort, load_manifest
from triage.fhir.pseudonym import Pseudonymiser

pytestmark = pytest.mark.integration


def _orthanc_bytes(
    server: OrthancServer, method: str, path: str, body: bytes | None = None
) -> bytes:
    request = urllib.request.Request(server.url + path, data=body, method=method)
    with urllib.request.urlopen(request, timeout=300) as response:
        return bytes(response.read())


def _orthanc(server: OrthancServer, method: str, path: str, body: bytes | None = None) -> object:
    return json.loads(_orthanc_bytes(server, method, path, body) or b"null")


def _segment_voxels(server: OrthancServer, study_id: str) -> dict[int, int]:
    """Voxels per segment number in the study's SEG (frames of one segment each)."""
    series: Any = _orthanc(server, "GET", f"/studies/{study_id}/series?expand")
    [seg_series] = [s for s in series if s["MainDicomTags"]["Modality"] == "SEG"]
    [instance] = seg_series["Instances"]
    seg = dcmread(BytesIO(_orthanc_bytes(server, "GET", f"/instances/{instance}/file")))
    frames = np.asarray(seg.pixel_array).reshape(-1, seg.Rows, seg.Columns)
    counts: dict[int, int] = {}
    for frame, group in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        number = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        counts[number] = counts.get(number, 0) + int(frame.sum())
    return counts


def _volume(study_dir: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    [series_dir] = {p.parent for p in study_dir.rglob("*.dcm")}
    volume = load_series(series_dir)
    return volume.hu, volume.spacing_mm


def test_study_sent_by_the_pacs_is_scored(
    orthanc_server: OrthancServer,
    receiver_address: tuple[str, int],
    kafka_broker,
    triton_server,
    port_offset: int,
    tmp_path: Path,
) -> None:
    cohort = tmp_path / "cohort"
    generate_cohort(cohort, n_patients=1, seed=123, matrix=64, slices=32)
    study_dir = cohort / load_manifest(cohort).studies[0].study_dir
    settings = Settings(
        run_dir=tmp_path / "run",
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "partitions": 4},
        triton={"http_port": int(triton_server.http_url.rsplit(":", 1)[1])},
        store={"url": f"sqlite:///{tmp_path / 'store.sqlite'}"},
        ingest={"writeback_url": orthanc_server.dicomweb_url},
        worker={
            "app_id": "ctriage-pacs",
            "data_dir": tmp_path / "worker",
            "metrics_port": 29140 + port_offset,
            "web_port": 26106 + port_offset,
        },
    )
    start_group_at_end(settings.kafka.bootstrap_servers, settings.worker.app_id)  # ours only
    worker = WorkerProcess(settings)
    worker.start(timeout_s=180)
    published: list[CtStudy] = []
    publisher = StudyPublisher(
        settings.kafka.bootstrap_servers,
        Pseudonymiser(
            settings.pseudonym.key.get_secret_value().encode(), settings.pseudonym.key_version
        ),
        settings.worker.hospital,
        on_event=published.append,
    )
    aet, port = receiver_address
    receiver = DicomReceiver(
        StudyStore(tmp_path / "studies"),
        on_stable=lambda study: publisher.publish(study.arrival, "dicom-cstore"),
        on_rejected=publisher.reject,
        ae_title=aet,
        port=port,
        stability_s=1.0,
    )
    receiver.start()
    collector = OutputCollector(settings.kafka.bootstrap_servers)
    try:
        study_ids = {
            _orthanc(orthanc_server, "POST", "/instances", f.read_bytes())["ParentStudy"]  # type: ignore[index]
            for f in sorted(study_dir.rglob("*.dcm"))
        }
        [study_id] = study_ids
        _orthanc(orthanc_server, "POST", "/modalities/ctriage/store", study_id.encode())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
            published and published[0].study_uid in collector.outcome.risks
        ):
            collector.poll(1.0)
        assert published, "the receiver announced no study"
        [event] = published
        assert event.source == "dicom-cstore"
        assert event.patient_pseudonym.startswith(settings.pseudonym.key_version + "-")
        risk = collector.outcome.risks.get(event.study_uid)
        assert risk is not None, "the study was not scored"
        assert risk.patient_pseudonym == event.patient_pseudonym
        assert risk.biomarkers["lung_volume_ml"] > 0
        assert event.study_uid not in collector.outcome.rejected_studies()

        # and the results went back into the study on the PACS: a SEG and an SR series
        deadline = time.monotonic() + 120
        modalities: list[str] = []
        while time.monotonic() < deadline and sorted(modalities) != ["CT", "SEG", "SR"]:
            time.sleep(1)
            series = _orthanc(orthanc_server, "GET", f"/studies/{study_id}/series?expand")
            modalities = [s["MainDicomTags"]["Modality"] for s in series]  # type: ignore[union-attr]
        assert sorted(modalities) == ["CT", "SEG", "SR"]
        # the learned model's regional biomarkers reached the risk record and the store
        assert risk.ct_severity_score is not None and 0 <= risk.ct_severity_score <= 30
        assert risk.bilateral is not None
        engine = store.make_engine(settings.store.url)
        query = store.risks.select().where(store.risks.c.study_uid == event.study_uid)
        try:
            deadline = time.monotonic() + 60  # the store sink runs beside the risk topic
            row = None
            while row is None and time.monotonic() < deadline:
                with engine.connect() as conn:
                    row = conn.execute(query).one_or_none()
                time.sleep(0.5)
        finally:
            engine.dispose()
        assert row is not None, "the risk never reached the store"
        assert (row.ct_severity_score, row.bilateral) == (risk.ct_severity_score, risk.bilateral)
        # the SEG holds lesion_unet's own masks (not a threshold re-computation) ...
        local = segment_volume(*_volume(study_dir), OnnxSegmenter())
        voxels = _segment_voxels(orthanc_server, study_id)
        assert voxels[1] == pytest.approx(int(local.lung.sum()), rel=1e-3)
        assert voxels.get(2, 0) == pytest.approx(int(local.lesion.sum()), rel=0.01, abs=5)
        # ... and the masks claim check is gone once stored
        assert not list((tmp_path / "worker" / "masks").glob("*.npz"))
    finally:
        collector.close()
        receiver.stop()
        publisher.close()
        worker.stop()


def test_poll_dicomweb_command_publishes_new_studies(
    orthanc_server: OrthancServer, kafka_broker, tmp_path: Path
) -> None:
    """``ctriage poll-dicomweb --once`` finds a study on Orthanc and announces it on Kafka."""
    cohort = tmp_path / "cohort"
    generate_cohort(cohort, n_patients=1, seed=321, matrix=64, slices=32)
    study = load_manifest(cohort).studies[0]
    for file in sorted((cohort / study.study_dir).rglob("*.dcm")):
        _orthanc(orthanc_server, "POST", "/instances", file.read_bytes())
    env = {
        **os.environ,
        "CTRIAGE_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "CTRIAGE_INGEST__STUDY_STORE": str(tmp_path / "studies"),
        "CTRIAGE_RUN_DIR": str(tmp_path / "run"),
    }
    command = [sys.executable, "-m", "streams.cli", "poll-dicomweb", "--once"]
    command += ["--url", orthanc_server.dicomweb_url]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "studies published" in result.stdout

    consumer = KafkaConsumer(
        bootstrap_servers=kafka_broker.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    consumer.subscribe([t.CT_STUDIES.name])
    # the session's broker is shared: other tests put poison messages on ct.studies too
    values = [record.value for record in consumer]
    consumer.close()
    events = [CtStudy.model_validate_json(v) for v in values if study.study_uid.encode() in v]
    ours = [e for e in events if e.source == "dicomweb" and e.study_uid == study.study_uid]
    assert len(ours) == 1
    assert Path(ours[0].study_uri.removeprefix("file://")).is_relative_to(tmp_path / "studies")
