"""`ctriage ingest`'s core: a folder with good and hostile files -> ct.studies + ct.studies.dlq."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from dicom_factory import write_ct_series
from kafka import KafkaConsumer
from pydicom.config import disable_value_validation
from pydicom.dataset import Dataset

from deploy.kafka import KafkaBroker
from streams import topics as t
from streams.records import CtStudy, DeadLetter
from streams.sources.folder import ingest_folder
from streams.sources.publish import StudyPublisher
from streams.sources.study_store import StudyStore
from triage.fhir.pseudonym import Pseudonymiser

pytestmark = pytest.mark.integration


def read_topic(
    bootstrap: str, topic: str, wanted: Callable[[bytes], bool], expected: int
) -> list[bytes]:
    """The first ``expected`` records of ``topic`` that ``wanted`` keeps (the broker is shared)."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=15000,
        group_id=None,
    )
    values = []
    try:
        for message in consumer:
            if wanted(message.value):
                values.append(message.value)
            if len(values) >= expected:
                break
    finally:
        consumer.close()
    return values


def test_folder_ingest_publishes_studies_and_dead_letters(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    t.ensure_topics(bootstrap, 4)
    inbox = tmp_path / "inbox"
    write_ct_series(inbox / "a", 10, study_uid="1.2.826.0.1.3680043.8.498.501")
    write_ct_series(inbox / "b", 10, study_uid="1.2.826.0.1.3680043.8.498.502", patient_id="P2")

    def hostile(_: int, ds: Dataset) -> None:
        del ds.StudyInstanceUID
        with disable_value_validation():
            ds.StudyInstanceUID = "../../../tmp/evil"

    write_ct_series(inbox / "c", 1, edit=hostile, prefix="evil")
    (inbox / "notes.txt").write_text("not DICOM")
    publisher = StudyPublisher(bootstrap, Pseudonymiser(b"test-key", "k1"), "test-hospital")
    try:
        report = ingest_folder(inbox, StudyStore(tmp_path / "store"), publisher)
    finally:
        publisher.close()
    assert report.instances == 20 and report.not_dicom == 1 and len(report.rejections) == 1
    ours = (b"1.2.826.0.1.3680043.8.498.501", b"1.2.826.0.1.3680043.8.498.502")
    records = read_topic(bootstrap, t.CT_STUDIES.name, lambda v: any(u in v for u in ours), 2)
    events = [CtStudy.model_validate_json(v) for v in records]
    assert {e.study_uid for e in events} >= {
        "1.2.826.0.1.3680043.8.498.501",
        "1.2.826.0.1.3680043.8.498.502",
    }
    for event in events:
        assert event.source == "folder" and event.study_uri.startswith("file://")
        assert "PAT-ING-1" not in event.to_bytes().decode()  # pseudonymised at ingress
    letters = [
        DeadLetter.model_validate_json(v)
        for v in read_topic(bootstrap, t.CT_STUDIES.dlq, lambda v: b"evil" in v, 1)
    ]
    assert letters[0].reason_code == "hostile_uid" and letters[0].stage == "ingest"
    assert json.loads(letters[0].payload)["source"] == "folder"
    assert not list((tmp_path / "store").rglob("*evil*"))
