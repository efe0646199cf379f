"""The SEG/SR write-back authenticates to the PACS with the poller's DICOMweb settings."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from streams.agents import writeback
from streams.mapping import timeline_point
from streams.records import Quantification, StageTimings
from streams.settings import IngestSettings, Settings
from streams.sources.dicomweb import pacs_session, store_results

pytestmark = pytest.mark.unit


class _Stow(BaseHTTPRequestHandler):
    """A STOW-RS endpoint that records each request's path and Authorization header."""

    seen: list[tuple[str, str | None]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        _Stow.seen.append((self.path, self.headers.get("Authorization")))
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def stow_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Stow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Stow.seen = []
    try:
        yield f"http://127.0.0.1:{server.server_port}/dicom-web"
    finally:
        server.shutdown()
        server.server_close()


def _instance() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"  # Enhanced SR
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.StudyInstanceUID = generate_uid()
    return ds


def test_store_results_sends_the_session_credentials(stow_url: str) -> None:
    session = pacs_session(stow_url, SecretStr("pacs-token"))
    store_results(stow_url, [_instance()], session=session, timeout_s=5)
    store_results(stow_url, [_instance()])  # without a session: no credentials
    assert _Stow.seen == [("/dicom-web/studies", "Bearer pacs-token"), ("/dicom-web/studies", None)]


def test_contradictory_pacs_credentials_stop_the_worker_at_start() -> None:
    ingest = IngestSettings(
        writeback_url="https://pacs.example/dicom-web",
        dicomweb_token=SecretStr("t"),
        dicomweb_username="ctriage",
        dicomweb_password=SecretStr("p"),
    )
    settings = Settings(ingest=ingest)
    with pytest.raises(ValueError, match="not both"):
        writeback.register(SimpleNamespace(settings=settings))  # type: ignore[arg-type]
    # write-back off: no session is built, nothing is declared (no app is touched)
    writeback.register(SimpleNamespace(settings=Settings()))  # type: ignore[arg-type]


def _quantification(uid: str, ct_time: str, lesion: float) -> Quantification:
    return Quantification(
        study_uid=uid, patient_pseudonym="k1-a", biomarkers={"lesion_percent": lesion},
        lesion_model="lesion_threshold", lesion_model_version="1", ct_time=ct_time,
        published_at=0.0, hospital="h", timings=StageTimings(),
    )  # fmt: skip


def test_the_sr_compares_with_the_prior_ct_in_the_timeline() -> None:
    first = _quantification("1.1", "2020-11-02T08:00:00+00:00", 12.0)
    follow = _quantification("1.2", "2020-11-05T08:00:00+00:00", 31.0)
    stored = [timeline_point(first).to_dict()]
    prior = writeback.prior_comparison(stored, follow)
    assert prior is not None
    assert (prior.study_uid, prior.study_date.isoformat()) == ("1.1", "2020-11-02")
    assert (prior.lesion_percent, prior.lesion_points, prior.interval_days) == (12.0, 19.0, 3.0)
    assert writeback.prior_comparison(stored, first) is None  # a first CT: no comparison
    assert writeback.prior_comparison(None, follow) is None  # nothing known yet
