"""DICOMweb source: poll a PACS with QIDO-RS for new studies, fetch CT series with WADO-RS.

Works with any DICOMweb server (Orthanc's plugin in the tests). A study is taken once its
instance count (``NumberOfStudyRelatedInstances``) has not changed for ``stability_s`` seconds
across polls: DICOMweb has no "study complete" signal either. Fetched instances go to the study
store under keys derived from their UIDs, and the study is announced like any other source's.
A non-conformant UID (an anonymiser's UUID) is fetched like any other, percent-encoded in the
request URLs; a hostile one (control characters, path separators) is dead-lettered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from requests import RequestException

from inference.exceptions import SeriesRejected, SeriesRejectionReason
from inference.headers import quiet_pydicom
from inference.uids import uid_refusal
from inference.volume import study_datetime
from streams.metrics import RECEIVED_INSTANCES
from streams.records import DeadLetter
from streams.sources.publish import StudyArrival, rejection
from streams.sources.study_store import StudyStore, patient_id

logger = logging.getLogger(__name__)

SOURCE = "dicomweb"
_STUDY_UID = "0020000D"
_SERIES_UID = "0020000E"
_INSTANCES = "00201208"
#: Ask for the instances as stored (no transcoding by the server).
_AS_STORED = (("application/dicom", "*"),)


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
    ) -> None:
        # permissive: anonymisers' UIDs (UUIDs, leading zeros) are fetched; hostile ones are not
        self.client = DICOMwebClient(url, permissive_uid=True)
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


def store_results(url: str, datasets: list[Dataset]) -> None:
    """STOW-RS the result objects (SEG, SR) into their study on the PACS."""
    DICOMwebClient(url).store_instances(datasets)
