"""Orthanc (a real PACS) sends studies to our C-STORE receiver; each stable study loads.

The receiver accepts only allow-listed calling AE titles (Orthanc's own, and the test's
pynetdicom peer): Orthanc sending from an unknown AE title, or from an address not allowed, is
rejected at association, counted and logged, and nothing of the study is stored.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
from pathlib import Path

import pytest
from dicom_factory import ct_slice, write_ct_series
from orthanc_client import orthanc, upload
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from deploy.orthanc import OrthancServer
from inference.volume import load_series
from streams.metrics import INGRESS_REFUSALS, NONCONFORMANT_UID_STUDIES
from streams.records import DeadLetter
from streams.sources.dicom_receiver import DicomReceiver, PeerAllowList, StableStudy
from streams.sources.study_store import StudyStore

pytestmark = pytest.mark.integration

STABILITY_S = 1.0
#: Orthanc's calling AE title (deploy/orthanc.py's default) and the test's own pynetdicom peer
ALLOWED = PeerAllowList.of(["ORTHANC", "HOSTILE"], ["127.0.0.1"])


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
def peers() -> PeerAllowList:
    """Who the receiver accepts (a test may override this fixture)."""
    return ALLOWED


@pytest.fixture
def receiver(tmp_path: Path, receiver_address: tuple[str, int], peers: PeerAllowList):  # noqa: ANN201
    aet, port = receiver_address
    collector = Collector()
    scp = DicomReceiver(
        StudyStore(tmp_path / "store"),
        on_stable=collector.on_stable,
        on_rejected=collector.rejected.append,
        ae_title=aet,
        port=port,
        stability_s=STABILITY_S,
        peers=peers,
    )
    scp.start()
    yield scp, collector
    scp.stop()


def refused(reason: str) -> float:
    return INGRESS_REFUSALS.labels(source="dicom-cstore", reason=reason)._value.get()


def own_study(folder: Path, slices: int) -> Path:
    """A CT series under a study UID of its own (the factory's default is shared in Orthanc)."""
    study_uid = generate_uid()

    def edit(_: int, ds: Dataset) -> None:
        ds.StudyInstanceUID = study_uid

    write_ct_series(folder, slices, edit=edit)
    return folder


def store_from(server: OrthancServer, study_id: str, local_aet: str) -> None:
    """Orthanc's C-STORE of a study to our receiver, calling with ``local_aet``."""
    body = json.dumps({"Resources": [study_id], "LocalAet": local_aet, "Synchronous": True})
    orthanc(server, "POST", "/modalities/ctriage/store", body.encode())


def test_orthanc_from_an_unknown_ae_title_is_rejected_and_counted(
    orthanc_server: OrthancServer,
    receiver,  # noqa: ANN001
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    scp, collector = receiver
    study_id = upload(orthanc_server, own_study(tmp_path / "series", 4))
    before = refused("unknown_calling_ae")
    with (
        caplog.at_level(logging.WARNING, logger="streams.sources.refusals"),
        pytest.raises(urllib.error.HTTPError),  # Orthanc reports the failed C-STORE
    ):
        store_from(orthanc_server, study_id, "INTRUDER")
    assert refused("unknown_calling_ae") == before + 1
    assert any(
        "dicom-cstore refused 'INTRUDER'@127.0.0.1: unknown_calling_ae" in r.getMessage()
        for r in caplog.records
    )
    time.sleep(STABILITY_S * 2)
    assert scp.instances == 0 and not collector.stable and not collector.rejected
    assert not any(scp.store.root.rglob("*.dcm"))
    # the same study from Orthanc's own AE title goes through
    store_from(orthanc_server, study_id, "ORTHANC")
    assert collector.wait().arrival.instances == 4


@pytest.mark.parametrize("peers", [PeerAllowList.of(["ORTHANC"], ["10.20.0.0/16"])])
def test_an_allowed_ae_title_from_another_address_is_rejected(
    orthanc_server: OrthancServer,
    receiver,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    scp, collector = receiver
    study_id = upload(orthanc_server, own_study(tmp_path / "series", 2))
    before = refused("unknown_calling_host")
    with pytest.raises(urllib.error.HTTPError):
        store_from(orthanc_server, study_id, "ORTHANC")
    assert refused("unknown_calling_host") == before + 1
    assert scp.instances == 0


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
