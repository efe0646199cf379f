"""Orthanc (a real PACS) sends studies to our C-STORE receiver; each stable study loads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from dicom_factory import ct_slice, write_ct_series
from orthanc_client import orthanc, upload
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from deploy.orthanc import OrthancServer
from inference.volume import load_series
from streams.metrics import NONCONFORMANT_UID_STUDIES
from streams.records import DeadLetter
from streams.sources.dicom_receiver import DicomReceiver, StableStudy
from streams.sources.study_store import StudyStore

pytestmark = pytest.mark.integration

STABILITY_S = 1.0


class Collector:
    def __init__(self) -> None:
        self.stable: list[StableStudy] = []
        self.rejected: list[DeadLetter] = []
        self.event = threading.Event()

    def on_stable(self, study: StableStudy) -> None:
        self.stable.append(study)
        self.event.set()

    def wait(self, timeout_s: float = 120) -> StableStudy:
        assert self.event.wait(timeout_s), "no stable study announced"
        return self.stable[-1]


@pytest.fixture
def receiver(tmp_path: Path, receiver_address: tuple[str, int]):  # noqa: ANN201
    aet, port = receiver_address
    collector = Collector()
    scp = DicomReceiver(
        StudyStore(tmp_path / "store"),
        on_stable=collector.on_stable,
        on_rejected=collector.rejected.append,
        ae_title=aet,
        port=port,
        stability_s=STABILITY_S,
    )
    scp.start()
    yield scp, collector
    scp.stop()


def test_orthanc_echoes_our_receiver(orthanc_server: OrthancServer, receiver) -> None:  # noqa: ANN001
    orthanc(orthanc_server, "POST", "/modalities/ctriage/echo", b"{}")


def test_orthanc_sends_a_study_that_becomes_a_volume(
    orthanc_server: OrthancServer,
    receiver,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    scp, collector = receiver
    write_ct_series(tmp_path / "series", 12)
    study_id = upload(orthanc_server, tmp_path / "series")
    orthanc(orthanc_server, "POST", "/modalities/ctriage/store", study_id.encode())
    sent_at = time.monotonic()
    stable = collector.wait()
    assert stable.arrival.instances == 12 and len(stable.series_sizes) == 1
    assert stable.waited_s >= STABILITY_S
    assert time.monotonic() - sent_at < 60
    volume = load_series(stable.arrival.study_dir)
    assert volume.hu.shape == (12, 32, 32)
    assert not collector.rejected


def test_study_with_uuid_uids_arrives_and_is_counted_once(
    orthanc_server: OrthancServer,
    receiver,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    """An anonymiser's UUID UIDs (three of four public COVID-CT-MD series) reach the store."""
    scp, collector = receiver
    study_uid = "5d3ab0f1-8e8c-4a36-9c55-3b1f61c2a0de"

    def uuid_study(_: int, ds: Dataset) -> None:
        del ds.StudyInstanceUID
        ds.StudyInstanceUID = study_uid  # the factory's edits run with validation off

    write_ct_series(tmp_path / "series", 12, edit=uuid_study)
    before = NONCONFORMANT_UID_STUDIES._value.get()
    study_id = upload(orthanc_server, tmp_path / "series")
    orthanc(orthanc_server, "POST", "/modalities/ctriage/store", study_id.encode())
    stable = collector.wait()
    assert stable.arrival.study_uid == study_uid and stable.arrival.instances == 12
    assert study_uid not in str(stable.arrival.study_dir)  # stored under a hash of the UID
    assert load_series(stable.arrival.study_dir).study_uid == study_uid
    assert NONCONFORMANT_UID_STUDIES._value.get() == before + 1
    assert not collector.rejected


def test_real_jpeg_lossless_series_through_orthanc(
    orthanc_server: OrthancServer,
    receiver,
    shared_data: Path,  # noqa: ANN001
) -> None:
    scp, collector = receiver
    study_id = upload(orthanc_server, shared_data / "dicom" / "covid-ct-md" / "P001")
    orthanc(orthanc_server, "POST", "/modalities/ctriage/store", study_id.encode())
    stable = collector.wait()
    assert stable.arrival.instances == 148
    volume = load_series(stable.arrival.study_dir)
    assert volume.hu.shape == (148, 512, 512)


def test_hostile_uid_is_refused_with_a_dead_letter(receiver) -> None:  # noqa: ANN001
    scp, collector = receiver
    ds = ct_slice(0, series_uid="1.2.3")
    del ds.SeriesInstanceUID
    from pydicom.config import disable_value_validation

    with disable_value_validation():
        ds.SeriesInstanceUID = "../../etc/passwd"
    ae = AE(ae_title="HOSTILE")
    ae.add_requested_context(CTImageStorage, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", scp.address[1], ae_title=scp.ae_title)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    assert status.Status == 0xC000
    [letter] = collector.rejected
    assert letter.reason_code == "hostile_uid" and letter.stage == "ingest"
    assert not any(scp.store.root.rglob("*passwd*"))
