"""Publish ``ct.studies`` events and ingress dead letters for the DICOM sources.

Every source (folder, C-STORE receiver, DICOMweb poller) ends the same way: a stored study becomes
a claim-check event keyed by the patient pseudonym, or a refused input becomes a dead letter on
``ct.studies.dlq`` that names the study UID (when known), the source and the reason code.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaProducer

from streams import topics as t
from streams.dlq import build_dead_letter
from streams.kafka_security import PLAINTEXT, KafkaSecurity
from streams.metrics import INGESTED_STUDIES
from streams.records import CtStudy, DeadLetter
from triage.fhir import Pseudonymiser

logger = logging.getLogger(__name__)

STAGE = "ingest"
_EVENTS = uuid.uuid5(uuid.NAMESPACE_URL, "https://ctriage.invalid/ingest")


@dataclass(frozen=True)
class StudyArrival:
    """A study ready to be announced: where it is stored and what ingress knows of it."""

    study_uid: str
    patient_id: str
    study_dir: Path
    ct_time: datetime | None
    instances: int


def study_event(
    arrival: StudyArrival, source: str, pseudonymiser: Pseudonymiser, hospital: str
) -> CtStudy:
    """The claim-check event of a stored study; the same study always gets the same event id."""
    when = arrival.ct_time or datetime.now(UTC)
    return CtStudy(
        event_id=str(uuid.uuid5(_EVENTS, arrival.study_uid)),
        study_uid=arrival.study_uid,
        patient_pseudonym=pseudonymiser.patient(arrival.patient_id),
        study_uri=arrival.study_dir.resolve().as_uri(),
        source=source,
        ct_time=when.isoformat(),
        published_at=time.time(),
        hospital=hospital,
    )


def rejection(
    source: str, reason: str, error: BaseException | str, study_uid: str = "", item: str = ""
) -> DeadLetter:
    """A dead letter for input refused at ingress (counted in the dead-letter metric)."""
    return build_dead_letter(
        stage=STAGE,
        reason=reason,
        error=error,
        source_topic=f"{source}:{item}"[:200],
        source_partition=None,
        source_offset=None,
        key=None,
        payload=json.dumps({"study_uid": study_uid, "source": source, "item": item}),
    )


class StudyPublisher:
    """Sends events and dead letters to Kafka; ``on_event`` / ``on_rejection`` watch them."""

    def __init__(
        self,
        bootstrap_servers: str,
        pseudonymiser: Pseudonymiser,
        hospital: str,
        on_event: Callable[[CtStudy], None] | None = None,
        on_rejection: Callable[[DeadLetter], None] | None = None,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.pseudonymiser = pseudonymiser
        self.hospital = hospital
        self.on_event = on_event
        self.on_rejection = on_rejection
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5, **security.kafka_python()
        )

    def publish(self, arrival: StudyArrival, source: str) -> CtStudy:
        """Announce a stored study on ``ct.studies``."""
        event = study_event(arrival, source, self.pseudonymiser, self.hospital)
        self._producer.send(
            t.CT_STUDIES.name, key=event.patient_pseudonym.encode(), value=event.to_bytes()
        )
        INGESTED_STUDIES.labels(source=source).inc()
        logger.info("published study %s from %s", arrival.study_uid, source)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def reject(self, letter: DeadLetter) -> None:
        """Send an ingress dead letter to ``ct.studies.dlq``."""
        self._producer.send(t.CT_STUDIES.dlq, value=letter.to_bytes())
        if self.on_rejection is not None:
            self.on_rejection(letter)

    def flush(self, timeout_s: float = 30) -> None:
        """Wait until every send is acknowledged."""
        self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        """Flush and close the producer."""
        self._producer.flush()
        self._producer.close()
