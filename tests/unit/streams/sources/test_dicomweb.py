"""The DICOMweb poller's own request policy (its PACS round trips: tests/integration)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests

from streams.sources.dicomweb import REQUEST_ATTEMPTS, DicomwebPoller
from streams.sources.study_store import StudyStore


class CountingSession(requests.Session):
    """A session that counts the requests it is asked to send."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def request(self, *args: object, **kwargs: object) -> requests.Response:  # type: ignore[override]
        self.sent += 1
        return super().request(*args, **kwargs)  # type: ignore[arg-type]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_failing_request_is_tried_a_few_times_then_left_to_the_next_poll(tmp_path: Path) -> None:
    """dicomweb-client's default is 5 tries over 30 s for any error, an untrusted certificate
    included; the poll loop tries again every interval, so each request gets 3 tries."""
    session = CountingSession()
    poller = DicomwebPoller(
        f"http://127.0.0.1:{_closed_port()}/dicom-web",
        StudyStore(tmp_path / "store"),
        on_study=lambda arrival: None,
        on_rejected=lambda letter: None,
        session=session,
        timeout_s=5,
    )
    with pytest.raises(requests.exceptions.ConnectionError):
        poller.poll_once()
    assert session.sent == REQUEST_ATTEMPTS == 3
