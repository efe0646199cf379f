"""DICOM C-STORE receiver (pynetdicom Storage SCP): instances in, stable studies out.

A PACS or scanner pushes instances one by one, over one or many associations, with no "study
complete" message. The receiver writes each instance to the study store (under checked UIDs),
groups them by StudyInstanceUID / SeriesInstanceUID, and announces a study once no new instance
of it has arrived for ``stability_s`` seconds (MONAI Informatics Gateway uses 5 s by default;
sources differ, so it is configurable). An instance that arrives after its study was announced
re-opens it: the study is announced again when stable (same event id; downstream is idempotent).
C-ECHO is answered. A refused instance (hostile UID) gets a failure status and a dead letter.

Only known peers may send (MONAI Informatics Gateway's ``rejectUnknownSources``): with a
:class:`PeerAllowList` an association from another calling AE title (or an allowed title from
another address) is rejected at once (A-ASSOCIATE-RJ, permanent, "calling AE title not
recognised"), before any instance is read; the refusal is counted in
``ctriage_ingress_refusals_total{source="dicom-cstore"}`` and logged with the peer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from inference import SeriesRejected, quiet_pydicom, study_datetime
from streams.metrics import RECEIVED_INSTANCES
from streams.records import DeadLetter
from streams.sources.publish import StudyArrival, rejection
from streams.sources.refusals import IngressRefusalValues, count_refusal
from streams.sources.study_store import StudyStore, patient_id

logger = logging.getLogger(__name__)

SOURCE = "dicom-cstore"
STATUS_SUCCESS = 0x0000
STATUS_CANNOT_UNDERSTAND = 0xC000  # PS3.4 C-STORE "Error: Cannot understand"
STATUS_OUT_OF_RESOURCES = 0xA700
# A-ASSOCIATE-RJ (PS3.8 9.3.4): rejected permanent, by the service user, with its diagnostic
_REJECTED_PERMANENT = 0x01
_BY_SERVICE_USER = 0x01
_DIAGNOSTIC = {
    IngressRefusalValues.UNKNOWN_CALLING_AE: 0x03,  # calling AE title not recognised
    IngressRefusalValues.UNKNOWN_CALLING_HOST: 0x01,  # no reason given
}
#: Transfer syntaxes accepted for storage: everything pydicom knows, compressed included.
_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1 (what CT scanners and COVID-CT-MD use)
    "1.2.840.10008.1.2.4.57",  # JPEG lossless
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.5",  # RLE lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near lossless (stored, refused later by the reader)
    "1.2.840.10008.1.2.4.91",  # JPEG 2000 (idem)
    "1.2.840.10008.1.2.4.50",  # JPEG baseline (idem)
    "1.2.840.10008.1.2.1.99",  # deflated explicit VR little endian
]


@dataclass
class _PendingStudy:
    patient_id: str
    ct_time: datetime | None
    study_dir: Path
    last_at: float
    series: dict[str, set[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class StableStudy:
    """A study whose instances stopped arriving; ``waited_s`` = announce time - last instance."""

    arrival: StudyArrival
    series_sizes: dict[str, int]
    last_instance_at: float
    waited_s: float


class StudyTracker:
    """Groups stored instances by study and series and tells which studies are stable."""

    def __init__(self, stability_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stability_s = stability_s
        self.clock = clock
        self._pending: dict[str, _PendingStudy] = {}
        self._lock = threading.Lock()

    def add(
        self, study_uid: str, series_uid: str, sop_uid: str, ds: Dataset, study_dir: Path
    ) -> None:
        """Note one stored instance."""
        now = self.clock()
        with self._lock:
            pending = self._pending.get(study_uid)
            if pending is None:
                pending = _PendingStudy(patient_id(ds), study_datetime(ds), study_dir, now)
                self._pending[study_uid] = pending
            pending.last_at = now
            pending.series.setdefault(series_uid, set()).add(sop_uid)

    def pop_stable(self) -> list[StableStudy]:
        """Remove and return the studies quiet for at least ``stability_s``."""
        now = self.clock()
        with self._lock:
            ready = [uid for uid, p in self._pending.items() if now - p.last_at >= self.stability_s]
            popped = [(uid, self._pending.pop(uid)) for uid in ready]
        return [
            StableStudy(
                arrival=StudyArrival(
                    study_uid=uid,
                    patient_id=p.patient_id,
                    study_dir=p.study_dir,
                    ct_time=p.ct_time,
                    instances=sum(len(s) for s in p.series.values()),
                ),
                series_sizes={series: len(sops) for series, sops in p.series.items()},
                last_instance_at=p.last_at,
                waited_s=now - p.last_at,
            )
            for uid, p in popped
        ]

    def pending(self) -> int:
        """Studies still receiving (not yet stable)."""
        with self._lock:
            return len(self._pending)


@dataclass(frozen=True)
class PeerAllowList:
    """The C-STORE peers allowed to associate: calling AE titles, optionally from networks."""

    ae_titles: frozenset[str]
    networks: tuple[IPv4Network | IPv6Network, ...] = ()

    @classmethod
    def of(cls, ae_titles: Iterable[str], hosts: Iterable[str] = ()) -> PeerAllowList:
        """From settings: AE titles, and IP addresses or networks (``10.1.0.0/16``)."""
        networks = tuple(ip_network(host.strip(), strict=False) for host in hosts)
        return cls(frozenset(title.strip() for title in ae_titles), networks)

    def refusal(self, ae_title: str, address: str) -> IngressRefusalValues | None:
        """Why a peer may not send (None: it may)."""
        if ae_title.strip() not in self.ae_titles:
            return IngressRefusalValues.UNKNOWN_CALLING_AE
        if not self.networks:
            return None
        try:
            peer = ip_address(address)
        except ValueError:
            return IngressRefusalValues.UNKNOWN_CALLING_HOST
        if any(peer in network for network in self.networks):
            return None
        return IngressRefusalValues.UNKNOWN_CALLING_HOST


class DicomReceiver:
    """A Storage SCP on ``host:port`` that announces stable studies.

    ``on_stable`` gets each stable study, ``on_rejected`` each dead letter. It runs in background
    threads between ``start()`` and ``stop()``. ``peers`` (None: any peer) are the only calling
    AE titles and addresses whose associations are accepted.
    """

    def __init__(
        self,
        store: StudyStore,
        on_stable: Callable[[StableStudy], object],
        on_rejected: Callable[[DeadLetter], object],
        ae_title: str = "CTRIAGE",
        host: str = "127.0.0.1",
        port: int = 11112,
        stability_s: float = 5.0,
        check_interval_s: float = 0.1,
        peers: PeerAllowList | None = None,
    ) -> None:
        self.store = store
        self.peers = peers
        self.on_stable = on_stable
        self.on_rejected = on_rejected
        self.ae_title = ae_title
        self.address = (host, port)
        self.tracker = StudyTracker(stability_s)
        self.check_interval_s = check_interval_s
        self.instances = 0
        self._server: Any = None
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    def start(self) -> None:
        """Listen for associations and start the stability timer."""
        ae = AE(ae_title=self.ae_title)
        ae.maximum_pdu_size = 0  # no limit: fewer PDUs for 0.5 MB CT slices
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(str(context.abstract_syntax), _TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        handlers: list[Any] = [(evt.EVT_C_STORE, self._handle_store)]
        if self.peers is not None:
            handlers.append((evt.EVT_REQUESTED, self._handle_request))
        self._server = ae.start_server(self.address, block=False, evt_handlers=handlers)
        self._stop.clear()
        self._timer = threading.Thread(target=self._watch, name="dicom-stability", daemon=True)
        self._timer.start()
        logger.info("C-STORE receiver %s listening on %s:%d", self.ae_title, *self.address)

    def stop(self) -> None:
        """Stop listening, then announce what is pending as soon as it is stable."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout=10)
            self._timer = None

    def _handle_request(self, event: Any) -> None:
        """Reject an association from a peer not on the allow-list, before it sends anything."""
        if self.peers is None:  # registered only with an allow-list
            return
        assoc = event.assoc
        calling = str(assoc.requestor.primitive.calling_ae_title).strip()
        address = str(assoc.requestor.address)
        reason = self.peers.refusal(calling, address)
        if reason is None:
            return
        count_refusal(
            SOURCE,
            reason,
            f"{calling[:16]!r}@{address}",
            "not in CTRIAGE_INGEST__CALLING_AE_TITLES / CALLING_HOSTS",
        )
        assoc.acse.send_reject(_REJECTED_PERMANENT, _BY_SERVICE_USER, _DIAGNOSTIC[reason])
        assoc.kill()

    def _handle_store(self, event: Any) -> int:
        try:
            with quiet_pydicom():
                ds = event.dataset
                study, series, sop, path = self.store.instance_path(ds)
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(".part")
                # the bytes as received (preamble + file meta + dataset): no decode, no re-encode
                partial.write_bytes(event.encoded_dataset())
                partial.replace(path)
        except SeriesRejected as e:
            self.on_rejected(rejection(SOURCE, e.reason, e, item=_calling(event)))
            return STATUS_CANNOT_UNDERSTAND
        except OSError as e:
            logger.error("cannot store an instance from %s: %s", _calling(event), e)
            return STATUS_OUT_OF_RESOURCES
        self.tracker.add(study, series, sop, ds, self.store.study_dir(study))
        self.instances += 1
        RECEIVED_INSTANCES.labels(source=SOURCE).inc()
        return STATUS_SUCCESS

    def _watch(self) -> None:
        while not self._stop.wait(self.check_interval_s):
            self._announce()
        self._announce()

    def _announce(self) -> None:
        for stable in self.tracker.pop_stable():
            logger.info(
                "study %s stable: %d instances in %d series",
                stable.arrival.study_uid,
                stable.arrival.instances,
                len(stable.series_sizes),
            )
            self.on_stable(stable)


def _calling(event: Any) -> str:
    try:
        return f"{event.assoc.requestor.ae_title}@{event.assoc.requestor.address}"
    except AttributeError:
        return "unknown peer"
