"""DICOMweb source: poll a PACS with QIDO-RS for new studies, fetch CT series with WADO-RS.

Works with any DICOMweb server (Orthanc's plugin in the tests). A study is taken once its
instance count (``NumberOfStudyRelatedInstances``) has not changed for ``stability_s`` seconds
across polls: DICOMweb has no "study complete" signal either. Fetched instances go to the study
store under keys derived from their UIDs, and the study is announced like any other source's.
A non-conformant UID (an anonymiser's UUID) is fetched like any other, percent-encoded in the
request URLs; a hostile one (control characters, path separators) is dead-lettered.

The PACS may require authentication and TLS (:func:`pacs_session`): a bearer token or a user and
password (HTTP basic), and a CA bundle for a certificate signed by the hospital's own CA.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dicomweb_client.api import DICOMwebClient
from pydantic import SecretStr
from pydicom.dataset import Dataset
from requests import PreparedRequest, RequestException, Response, Session
from requests.adapters import HTTPAdapter
from requests.auth import HTTPBasicAuth

from inference import (
    SeriesRejected,
    SeriesRejectionReason,
    quiet_pydicom,
    study_datetime,
    uid_refusal,
)
from streams.metrics import RECEIVED_INSTANCES
from streams.records import DeadLetter
from streams.sources.publish import StudyArrival, rejection
from streams.sources.study_store import StudyStore, patient_id

logger = logging.getLogger(__name__)

SOURCE = "dicomweb"
#: Tries per DICOMweb request; retrying waits multiplier x 2^n ms between them: 0.5 s, then 1 s.
REQUEST_ATTEMPTS = 3
RETRY_WAIT_MS = 250
_STUDY_UID = "0020000D"
_SERIES_UID = "0020000E"
_INSTANCES = "00201208"
#: Ask for the instances as stored (no transcoding by the server).
_AS_STORED = (("application/dicom", "*"),)


def pacs_session(
    url: str,
    token: SecretStr | None = None,
    username: str | None = None,
    password: SecretStr | None = None,
    ca_file: Path | None = None,
) -> Session:
    """An HTTP session that authenticates to the PACS and checks its certificate.

    A bearer ``token`` or a ``username`` and ``password`` (not both); ``ca_file`` (PEM) replaces
    the system's CAs for a PACS whose certificate the hospital's own CA signed. Credentials over
    plain ``http://`` work but are logged as a warning: they travel in clear.
    """
    if token is not None and username is not None:
        raise ValueError("give the PACS a bearer token or a user and password, not both")
    if ca_file is not None and not ca_file.is_file():
        raise ValueError(f"CA file {ca_file} does not exist")
    session = Session()
    if token is not None:
        session.headers["Authorization"] = f"Bearer {token.get_secret_value()}"
    elif username is not None:
        secret = password.get_secret_value() if password is not None else ""
        session.auth = HTTPBasicAuth(username, secret)
    if ca_file is not None:
        session.verify = str(ca_file)
        # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's verify; the
        # adapter makes the configured CA the one that is used
        session.mount("https://", _CaBundleAdapter(str(ca_file)))
    if (token is not None or username is not None) and url.lower().startswith("http://"):
        logger.warning("PACS credentials are sent in clear to %s: use https://", url)
    return session


class _CaBundleAdapter(HTTPAdapter):
    """Verifies every HTTPS certificate against one CA bundle, whatever the environment says."""

    def __init__(self, ca_file: str) -> None:
        super().__init__()
        self.ca_file = ca_file

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:  # type: ignore[override]
        """Send with ``verify`` set to the CA bundle (never off, never the environment's)."""
        kwargs["verify"] = self.ca_file
        return super().send(request, **kwargs)


@dataclass
class _Seen:
    instances: int
    since: float


class DicomwebPoller:
    """Polls ``url``; ``on_study`` gets each stable study once stored, ``on_rejected`` refusals."""

    def __init__(
        self,
        url: str,
        store: StudyStore,
        on_study: Callable[[StudyArrival], None],
        on_rejected: Callable[[DeadLetter], None],
        stability_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        session: Session | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        # permissive: anonymisers' UIDs (UUIDs, leading zeros) are fetched; hostile ones are not
        self.client = DICOMwebClient(url, session=session, permissive_uid=True, timeout=timeout_s)
        # dicomweb-client retries every failed request (any exception, an untrusted certificate
        # included) 5 times over 30 s; the poll loop tries again every interval anyway, so a
        # request gets REQUEST_ATTEMPTS tries 0.5 s and 1 s apart and an error is reported at once
        self.client.set_http_retry_params(
            max_attempts=REQUEST_ATTEMPTS, wait_exponential_multiplier=RETRY_WAIT_MS
        )
        self.store = store
        self.on_study = on_study
        self.on_rejected = on_rejected
        self.stability_s = stability_s
        self.clock = clock
        self._candidates: dict[str, _Seen] = {}
        self._done: dict[str, int] = {}  # study UID -> instance count when it was fetched

    def poll_once(self) -> list[StudyArrival]:
        """One QIDO-RS search; fetch and announce the studies that became stable."""
        now = self.clock()
        arrivals = []
        for study in self.client.search_for_studies(fields=["NumberOfStudyRelatedInstances"]):
            uid = _value(study, _STUDY_UID)
            count = int(_value(study, _INSTANCES) or 0)
            refusal = uid_refusal(uid)
            if refusal is not None:
                if uid not in self._done:
                    self._done[uid] = count
                    error = f"StudyInstanceUID {uid[:80]!r} {refusal}"
                    self.on_rejected(
                        rejection(SOURCE, SeriesRejectionReason.HOSTILE_UID, error, item=uid[:80])
                    )
                continue
            if self._done.get(uid) == count:
                continue
            seen = self._candidates.get(uid)
            if seen is None or seen.instances != count:
                self._candidates[uid] = _Seen(count, now)
                if self.stability_s > 0:
                    continue
            elif now - seen.since < self.stability_s:
                continue
            arrival = self._fetch(uid)
            self._candidates.pop(uid, None)
            self._done[uid] = count
            if arrival is not None:
                arrivals.append(arrival)
                self.on_study(arrival)
        return arrivals

    def run(self, interval_s: float, should_stop: Callable[[], bool]) -> None:
        """Poll every ``interval_s`` until ``should_stop()``; a PACS outage is logged, not fatal."""
        while not should_stop():
            try:
                self.poll_once()
            except RequestException as e:
                logger.warning("DICOMweb poll of %s failed: %s", self.client.base_url, e)
            time.sleep(interval_s)

    def _fetch(self, study_uid: str) -> StudyArrival | None:
        """Fetch the CT series of a study into the store."""
        first: Dataset | None = None
        stored = 0
        found = self.client.search_for_series(_in_url(study_uid), search_filters={"Modality": "CT"})
        for series in found:
            series_uid = _value(series, _SERIES_UID)
            refusal = uid_refusal(series_uid)
            if refusal is not None:
                error = f"SeriesInstanceUID {series_uid[:80]!r} {refusal}"
                self.on_rejected(
                    rejection(SOURCE, SeriesRejectionReason.HOSTILE_UID, error, study_uid)
                )
                continue
            with quiet_pydicom():
                instances = self.client.retrieve_series(
                    _in_url(study_uid), _in_url(series_uid), media_types=_AS_STORED
                )
            for ds in instances:
                try:
                    self.store.save_dataset(ds)
                except SeriesRejected as e:
                    self.on_rejected(rejection(SOURCE, e.reason, e, study_uid))
                    continue
                first = first or ds
                stored += 1
                RECEIVED_INSTANCES.labels(source=SOURCE).inc()
        if first is None:
            error = f"study {study_uid} has no CT instance that could be stored"
            self.on_rejected(
                rejection(SOURCE, SeriesRejectionReason.NON_CT_MODALITY, error, study_uid)
            )
            return None
        return StudyArrival(
            study_uid=study_uid,
            patient_id=patient_id(first),
            study_dir=self.store.study_dir(study_uid),
            ct_time=study_datetime(first),
            instances=stored,
        )


def _value(item: Mapping[str, Any], tag: str) -> str:
    element = item.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    return str(values[0]) if isinstance(values, list) and values else ""


def _in_url(uid: str) -> str:
    """A UID as a URL path segment (a non-conformant one may hold ``?``, ``#``, ``%``)."""
    return quote(uid, safe="")


def store_results(
    url: str,
    datasets: list[Dataset],
    session: Session | None = None,
    timeout_s: float = 60.0,
) -> None:
    """STOW-RS the result objects (SEG, SR) into their study on the PACS.

    ``session`` authenticates and checks the certificate (:func:`pacs_session`); ``timeout_s``
    bounds each request (``CTRIAGE_INGEST__DICOMWEB_TIMEOUT_S``).
    """
    DICOMwebClient(url, session=session, timeout=timeout_s).store_instances(datasets)
