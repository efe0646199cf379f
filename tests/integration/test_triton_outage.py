"""A Triton outage: studies are dead-lettered with a typed reason; nothing else stops.

The worker is pointed at a port where no Triton listens (the real broker is running). Each CT
study is retried, then dead-lettered as ``triton_unavailable`` and counted in the worker's
metrics; a quantification that arrives meanwhile is still scored.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from kafka import KafkaProducer
from stream_checks import start_group_at_end

from streams import topics as t
from streams.demo import DemoOptions, WorkerProcess, run_pipeline
from streams.records import Quantification, StageTimings
from streams.settings import Settings
from triage.cohort import generate_cohort

pytestmark = pytest.mark.integration

PATIENTS = 3


@pytest.fixture(scope="module")
def outage_settings(
    kafka_broker, port_offset: int, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    run_dir = tmp_path_factory.mktemp("outage")
    return Settings(
        run_dir=run_dir,
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "partitions": 4},
        # nothing listens here; each study retried for 2 s (0.5 s, 1 s back-off), then given up
        triton={"http_port": 28090 + port_offset, "outage_retry_s": 2.0},
        store={"url": f"sqlite:///{run_dir / 'store.sqlite'}"},
        worker={
            "app_id": "ctriage-outage",
            "data_dir": run_dir / "worker",
            "metrics_port": 29130 + port_offset,
            "web_port": 26096 + port_offset,
        },
    )


def _study_uid(payload: str) -> str | None:
    try:
        return json.loads(payload).get("study_uid")
    except (ValueError, AttributeError):  # other tests' malformed messages share the topic
        return None


def test_triton_outage_dead_letters_and_keeps_flowing(outage_settings, tmp_path_factory):
    cohort = tmp_path_factory.mktemp("outage-cohort")
    generate_cohort(cohort, n_patients=PATIENTS, seed=99, matrix=64, slices=32)
    # at the end of every topic: else the worker first retries each earlier test's study against
    # the absent Triton (2 s each, minutes in a full run) and dead-letters studies not its own
    start_group_at_end(outage_settings.kafka.bootstrap_servers, outage_settings.worker.app_id)
    worker = WorkerProcess(outage_settings)
    worker.start(timeout_s=180)
    try:
        report, collector, _ = run_pipeline(
            outage_settings, cohort, DemoOptions(patients=PATIENTS, speed=10**7, timeout_s=300)
        )
        outcome = collector.outcome
        ours = set(report.study_uids)
        letters = [
            letter
            for letter in outcome.dead_letters
            if letter.source_topic == t.CT_STUDIES.name and _study_uid(letter.payload) in ours
        ]
        assert ours <= outcome.rejected_studies()
        assert not ours & set(outcome.risks)
        assert {letter.reason_code for letter in letters} == {"triton_unavailable"}
        assert len(letters) == PATIENTS

        # the rest of the pipeline still works: a quantification is scored during the outage
        quantification = Quantification(
            study_uid="1.2.826.0.1.3680043.99.1",
            patient_pseudonym="k1-outage-probe",
            biomarkers={"lesion_percent": 30.0, "lung_volume_ml": 4000.0},
            lesion_model="lesion_threshold",
            lesion_model_version="1",
            ct_time="2026-01-01T00:00:00+00:00",
            published_at=time.time(),
            hospital="demo-hospital",
            timings=StageTimings(),
        )
        producer = KafkaProducer(bootstrap_servers=outage_settings.kafka.bootstrap_servers)
        producer.send(
            t.CT_QUANTIFICATION.name,
            key=quantification.patient_pseudonym.encode(),
            value=quantification.to_bytes(),
        )
        producer.flush()
        producer.close()
        deadline = time.monotonic() + 60
        while quantification.study_uid not in outcome.risks and time.monotonic() < deadline:
            collector.poll(1.0)
        collector.close()
        assert quantification.study_uid in outcome.risks

        # and the outage is visible to operators
        url = f"http://127.0.0.1:{outage_settings.worker.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            metrics = response.read().decode()
        assert 'reason="triton_unavailable"' in metrics
    finally:
        worker.stop()


def test_outage_worker_log_names_the_retries(outage_settings):
    log = WorkerProcess(outage_settings).log_path
    text = log.read_text()
    assert "Triton unavailable (attempt 1), retrying in 0.5s" in text
    assert "Triton unavailable (attempt 2), retrying in 1.0s" in text
    assert "Triton still unavailable after 1.5s; dead-lettering" in text
