"""FHIR ingress: resources, Bundles and Bulk NDJSON -> validated, pseudonymised ``fhir.resources``.

Every resource of a payload is validated (R4 unless the payload declares R5), checked against
what the clinical context reads (:func:`triage.features.maps_to_context`), pseudonymised and
published keyed by the patient's pseudonym. Resources that carry nothing we read (Claims,
Immunizations, Organizations, ...) are counted as *ignored* and not published (data
minimisation). A rejected resource gets a typed reason and an OperationOutcome-style dead letter
on ``fhir.resources.dlq``; its original stays on the ingress side (the bounded
:class:`~streams.sources.quarantine.Quarantine`), because it was not pseudonymised. One bad
resource never stops the rest of its payload.

Nothing that names a patient leaves ingress: a dead letter (and its log line) carries the
reason, the position inside the payload (``Bundle.entry[3]``, ``line 12``) and the quarantined
file's random name, never the input file's name (Synthea names files after the patient).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from streams import topics as t
from streams.dlq import build_dead_letter
from streams.kafka_security import PLAINTEXT, KafkaSecurity
from streams.records import DeadLetter, FhirResourceEvent
from streams.sources.fhir_report import IngestReport, Rejection, operation_outcome
from streams.sources.quarantine import Quarantine
from triage.exceptions import FhirRejected, FhirRejectionReason
from triage.fhir import (
    ClinicalContext,
    FhirVersionValues,
    ParsedResource,
    ParseFailure,
    Pseudonymiser,
    bundle_patient_urls,
    inline_medications,
    iter_ndjson,
    iter_resources,
    load_json,
    maps_to_context,
    normalise_r5,
    patient_key,
    pseudonymise_resource,
    validate_resource,
)

logger = logging.getLogger(__name__)

STAGE = "fhir_ingress"
_EVENTS = uuid.uuid5(uuid.NAMESPACE_URL, "https://ctriage.invalid/fhir-ingress")


class FhirSink(Protocol):
    """Where ingress puts what it made: Kafka in production, a list for a dry run."""

    def send_resource(self, event: FhirResourceEvent) -> None:
        """Publish one pseudonymised resource on ``fhir.resources``."""

    def send_dead_letter(self, letter: DeadLetter) -> None:
        """Publish one dead letter on ``fhir.resources.dlq``."""


@dataclass
class CollectingSink:
    """A sink that keeps everything in memory (``ctriage ingest-fhir --dry-run``, benchmarks)."""

    events: list[FhirResourceEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def send_resource(self, event: FhirResourceEvent) -> None:
        """Keep the event."""
        self.events.append(event)

    def send_dead_letter(self, letter: DeadLetter) -> None:
        """Keep the dead letter."""
        self.dead_letters.append(letter)


class KafkaUnavailable(Exception):
    """The broker did not answer in time (at start-up, or while publishing)."""


class KafkaFhirSink:
    """Publishes to ``fhir.resources`` / ``fhir.resources.dlq`` with a kafka-python producer.

    ``connect_timeout_s`` bounds the wait for the broker at start-up (the client retries with
    backoff meanwhile), ``send_timeout_s`` one publication; both raise :class:`KafkaUnavailable`.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        connect_timeout_s: float = 60.0,
        send_timeout_s: float = 60.0,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self.bootstrap_servers = bootstrap_servers
        self.send_timeout_s = send_timeout_s
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap_servers,
                acks="all",
                linger_ms=5,
                bootstrap_timeout_ms=int(connect_timeout_s * 1000),
                max_block_ms=int(send_timeout_s * 1000),
                **security.kafka_python(),
            )
        except KafkaError as e:
            raise KafkaUnavailable(
                f"no Kafka broker answered at {bootstrap_servers} within {connect_timeout_s:g} s "
                f"({type(e).__name__})"
            ) from e

    def send_resource(self, event: FhirResourceEvent) -> None:
        """Publish one event keyed by the patient pseudonym."""
        self._send(t.FHIR_RESOURCES.name, event.patient_pseudonym.encode(), event.to_bytes())

    def send_dead_letter(self, letter: DeadLetter) -> None:
        """Publish one dead letter."""
        self._send(t.FHIR_RESOURCES.dlq, None, letter.to_bytes())

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until everything sent is acknowledged (``send_timeout_s`` by default)."""
        from kafka.errors import KafkaError

        wait_s = self.send_timeout_s if timeout_s is None else timeout_s
        try:
            self._producer.flush(timeout=wait_s)
        except KafkaError as e:
            raise KafkaUnavailable(
                f"Kafka at {self.bootstrap_servers} did not acknowledge within {wait_s:g} s "
                f"({type(e).__name__})"
            ) from e

    def close(self) -> None:
        """Flush (bounded) and close the producer."""
        try:
            self.flush()
        finally:
            self._producer.close(timeout=self.send_timeout_s)

    def _send(self, topic: str, key: bytes | None, value: bytes) -> None:
        from kafka.errors import KafkaError

        try:
            self._producer.send(topic, key=key, value=value)
        except KafkaError as e:
            raise KafkaUnavailable(
                f"cannot publish to {topic} at {self.bootstrap_servers} within "
                f"{self.send_timeout_s:g} s ({type(e).__name__})"
            ) from e


class FhirIngress:
    """Validates, pseudonymises and publishes FHIR payloads; reports counts and rejections.

    ``quarantine`` keeps rejected originals (None: nowhere, as in a dry run); ``r5_hint`` tells
    the sender of R5 content taken as R4 how to declare it on this channel (a CLI option, a
    Content-Type parameter).
    """

    def __init__(
        self,
        pseudonymiser: Pseudonymiser,
        hospital: str,
        sink: FhirSink,
        source: str,
        quarantine: Quarantine | None = None,
        r5_hint: str = "",
    ) -> None:
        self.pseudonymiser = pseudonymiser
        self.hospital = hospital
        self.sink = sink
        self.source = source
        self.quarantine = quarantine
        self.r5_hint = r5_hint

    def ingest_json(
        self,
        payload: bytes | str,
        version: FhirVersionValues = FhirVersionValues.R4,
        origin: str = "payload",
    ) -> IngestReport:
        """Ingest one JSON document: a resource or a Bundle of any supported type."""
        try:
            document = load_json(payload)
        except FhirRejected as e:
            report = IngestReport()
            self._reject(report, e, origin, "", None, self._hold(payload))
            return report
        urls = bundle_patient_urls(document) if _is_bundle(document) else {}
        if _is_bundle(document):  # a Medication entry travels inside the resource naming it
            document = inline_medications(document)
        return self._ingest(iter_resources(document, ""), version, origin, urls, document)

    def ingest_ndjson(
        self,
        payload: bytes | str,
        version: FhirVersionValues = FhirVersionValues.R4,
        origin: str = "payload",
    ) -> IngestReport:
        """Ingest a Bulk Data NDJSON file (one resource per line)."""
        return self._ingest(iter_ndjson(payload), version, origin, {}, None)

    def ingest_path(
        self, path: Path, version: FhirVersionValues = FhirVersionValues.R4
    ) -> IngestReport:
        """Ingest a ``.json`` / ``.ndjson`` file, or every such file under a folder.

        Patient files go first (Bulk exports split resources by type), so fewer resources wait
        in the pending state for their Patient. A file that cannot be read is a rejection
        (``unreadable_file``) counted like any other.
        """
        files = (
            sorted(
                (p for p in path.rglob("*") if p.suffix in {".json", ".ndjson"} and p.is_file()),
                key=lambda p: (not p.name.startswith("Patient"), str(p)),
            )
            if path.is_dir()
            else [path]
        )
        report = IngestReport()
        for file in files:
            try:
                data = file.read_bytes()
            except OSError as e:
                why = f"cannot read the file: {e.strerror or type(e).__name__}"
                error = FhirRejected(FhirRejectionReason.UNREADABLE_FILE, why)
                self._reject(report, error, file.name, "", None, None)
                continue
            if file.suffix == ".ndjson":
                report.merge(self.ingest_ndjson(data, version, origin=file.name))
            else:
                report.merge(self.ingest_json(data, version, origin=file.name))
        return report

    def _ingest(
        self,
        parts: Iterator[ParsedResource | ParseFailure],
        version: FhirVersionValues,
        origin: str,
        patient_urls: dict[str, str],
        document: Any,
    ) -> IngestReport:
        report = IngestReport()
        parsed: list[ParsedResource] = []
        document_held: list[str | None] = []  # the document, kept once for all its failures
        for part in parts:
            if not isinstance(part, ParseFailure):
                parsed.append(part)
                continue
            if part.raw is not None:  # an unreadable line: its own text
                held = self._hold(part.raw)
            else:  # a part of the document that is not a resource: the document itself
                if not document_held:
                    document_held.append(self._hold(document))
                held = document_held[0]
            rtype = part.error.resource_type
            self._reject(report, part.error, origin, part.location, rtype, held)
        # Patients first: their resources then find a known patient downstream.
        parsed.sort(key=lambda p: p.resource.get("resourceType") != "Patient")
        now = datetime.now(UTC).isoformat()
        for part in parsed:
            self._ingest_one(report, part, version, origin, patient_urls, now)
        return report

    def _ingest_one(
        self,
        report: IngestReport,
        part: ParsedResource,
        version: FhirVersionValues,
        origin: str,
        patient_urls: dict[str, str],
        now: str,
    ) -> None:
        resource = part.resource
        rtype = str(resource.get("resourceType"))[:64]
        report.count(rtype).received += 1
        try:
            validate_resource(resource, version)
            shaped = normalise_r5(resource) if version is FhirVersionValues.R5 else resource
            if not maps_to_context(shaped):
                report.count(rtype).ignored += 1
                return
            ClinicalContext().fold(shaped)  # units, plausibility, times: reject here, not later
            clean = pseudonymise_resource(
                resource,
                self.pseudonymiser.key,
                self.pseudonymiser.key_version,
                patient_urls=patient_urls,
                check_type=version is FhirVersionValues.R4,
            )
            pseudonym = patient_key(clean)
        except FhirRejected as e:
            held = self._hold(resource)
            self._reject(report, e, origin, part.location, rtype, held, received=False)
            return
        self.sink.send_resource(
            FhirResourceEvent(
                event_id=str(
                    uuid.uuid5(_EVENTS, f"{pseudonym}|{json.dumps(clean, sort_keys=True)}")
                ),
                patient_pseudonym=pseudonym,
                resource_type=rtype,
                resource=clean,
                source=self.source,
                event_time=now,
                published_at=time.time(),
                hospital=self.hospital,
                fhir_version=version.value,
            )
        )
        report.count(rtype).used += 1

    def _reject(
        self,
        report: IngestReport,
        error: FhirRejected,
        origin: str,
        location: str,
        rtype: str | None,
        held: str | None,
        received: bool = True,
    ) -> None:
        """Count, answer and dead-letter one rejection whose original is ``held`` in quarantine.

        The sender's answer (and the CLI's table) name the input (``origin``, e.g. the file);
        the dead letter only the position inside it and the quarantined file.
        """
        detail = error.why
        if error.reason is FhirRejectionReason.R5_CONTENT_AS_R4 and self.r5_hint:
            detail = f"{detail} ({self.r5_hint})"
        answer = Rejection(_where(origin, location), rtype, error.reason.value, detail)
        report.reject(answer, received)
        inside = Rejection(location or "payload", rtype, error.reason.value, detail)
        outcome = operation_outcome([inside], IngestReport())
        outcome["issue"] = outcome["issue"][:1]
        letter = build_dead_letter(
            stage=STAGE,
            reason=error.reason,
            error=f"{inside.location}: {detail}",
            source_topic=self.source,
            source_partition=None,
            source_offset=None,
            key=None,
            payload=json.dumps({"operationOutcome": outcome, "quarantined": held}),
        )
        self.sink.send_dead_letter(letter)

    def _hold(self, original: Any) -> str | None:
        """Keep a rejected original on the ingress side (it may hold identifiers)."""
        return self.quarantine.hold(original) if self.quarantine is not None else None


def _is_bundle(document: Any) -> bool:
    return isinstance(document, dict) and document.get("resourceType") == "Bundle"


def _where(origin: str, location: str) -> str:
    return f"{origin}:{location}" if location else origin
