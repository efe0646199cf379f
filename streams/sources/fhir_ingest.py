"""FHIR ingress: resources, Bundles and Bulk NDJSON -> validated, pseudonymised ``fhir.resources``.

Every resource of a payload is validated (R4 unless the payload declares R5), checked against
what the clinical context reads (:func:`triage.features.maps_to_context`), pseudonymised and
published keyed by the patient's pseudonym. Resources that carry nothing we read (Claims,
Immunizations, Organizations, ...) are counted as *ignored* and not published (data
minimisation). A rejected resource gets a typed reason and an OperationOutcome-style dead letter
on ``fhir.resources.dlq``; its original stays on the ingress side (quarantine folder), because
it was not pseudonymised. One bad resource never stops the rest of its payload.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from streams import topics as t
from streams.dlq import build_dead_letter
from streams.records import DeadLetter, FhirResourceEvent
from triage.exceptions import FhirRejected
from triage.fhir.context import ClinicalContext, maps_to_context
from triage.fhir.parse import (
    FhirVersionValues,
    ParsedResource,
    ParseFailure,
    iter_ndjson,
    iter_resources,
    load_json,
    normalise_r5,
    validate_resource,
)
from triage.fhir.pseudonym import (
    Pseudonymiser,
    bundle_patient_urls,
    patient_key,
    pseudonymise_resource,
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


class KafkaFhirSink:
    """Publishes to ``fhir.resources`` / ``fhir.resources.dlq`` with a kafka-python producer."""

    def __init__(self, bootstrap_servers: str) -> None:
        from kafka import KafkaProducer

        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5)

    def send_resource(self, event: FhirResourceEvent) -> None:
        """Publish one event keyed by the patient pseudonym."""
        self._producer.send(
            t.FHIR_RESOURCES.name, key=event.patient_pseudonym.encode(), value=event.to_bytes()
        )

    def send_dead_letter(self, letter: DeadLetter) -> None:
        """Publish one dead letter."""
        self._producer.send(t.FHIR_RESOURCES.dlq, value=letter.to_bytes())

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until everything sent is acknowledged."""
        self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        """Flush and close the producer."""
        self._producer.flush()
        self._producer.close()


@dataclass
class TypeCounts:
    """What happened to the resources of one type."""

    received: int = 0
    used: int = 0
    ignored: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class Rejection:
    """One rejected resource (or unreadable part of a payload), safe to show the sender."""

    location: str
    resource_type: str | None
    reason: str
    detail: str


@dataclass
class IngestReport:
    """Counts by resource type, and every rejection, of one or more payloads."""

    counts: dict[str, TypeCounts] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)

    def count(self, resource_type: str) -> TypeCounts:
        """The counters of one resource type (created on first use)."""
        return self.counts.setdefault(resource_type, TypeCounts())

    @property
    def used(self) -> int:
        """Resources published."""
        return sum(c.used for c in self.counts.values())

    @property
    def ignored(self) -> int:
        """Valid resources that carry nothing ctriage reads."""
        return sum(c.ignored for c in self.counts.values())

    @property
    def rejected(self) -> int:
        """Rejections (resources and unreadable parts of payloads)."""
        return len(self.rejections)

    def merge(self, other: IngestReport) -> None:
        """Add another report's numbers to this one."""
        for rtype, c in other.counts.items():
            mine = self.count(rtype)
            mine.received += c.received
            mine.used += c.used
            mine.ignored += c.ignored
            mine.rejected += c.rejected
        self.rejections.extend(other.rejections)


def operation_outcome(rejections: Iterable[Rejection], report: IngestReport) -> dict[str, Any]:
    """A FHIR R4 OperationOutcome: one issue per rejection, plus an information summary."""
    issues: list[dict[str, Any]] = [
        {
            "severity": "error",
            "code": _ISSUE_CODES.get(r.reason, "invalid"),
            "details": {
                "coding": [{"system": REASON_SYSTEM, "code": r.reason}],
                "text": r.detail[:1000],
            },
            "expression": [r.location],
        }
        for r in rejections
    ]
    issues.append(
        {
            "severity": "information",
            "code": "informational",
            "diagnostics": (
                f"{report.used} resources used, {report.ignored} ignored, "
                f"{report.rejected} rejected"
            ),
        }
    )
    return {"resourceType": "OperationOutcome", "issue": issues}


REASON_SYSTEM = "https://ctriage.invalid/fhir-rejection-reason"
# FhirRejectionReason -> FHIR R4 IssueType (hl7.org/fhir/R4/valueset-issue-type.html).
_ISSUE_CODES = {
    "invalid_json": "structure",
    "unknown_resource_type": "not-supported",
    "validation_failed": "invalid",
    "missing_subject": "required",
    "unit_mismatch": "code-invalid",
    "implausible_value": "value",
    "unknown_patient": "not-found",
    "unsupported_version": "not-supported",
    "unsupported_bundle_type": "not-supported",
    "r5_content_as_r4": "not-supported",
}


class FhirIngress:
    """Validates, pseudonymises and publishes FHIR payloads; reports counts and rejections."""

    def __init__(
        self,
        pseudonymiser: Pseudonymiser,
        hospital: str,
        sink: FhirSink,
        source: str,
        quarantine_dir: Path | None = None,
    ) -> None:
        self.pseudonymiser = pseudonymiser
        self.hospital = hospital
        self.sink = sink
        self.source = source
        self.quarantine_dir = quarantine_dir

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
            self._reject(report, e, origin, None, payload)
            return report
        urls = bundle_patient_urls(document) if _is_bundle(document) else {}
        return self._ingest(iter_resources(document, ""), version, origin, urls)

    def ingest_ndjson(
        self,
        payload: bytes | str,
        version: FhirVersionValues = FhirVersionValues.R4,
        origin: str = "payload",
    ) -> IngestReport:
        """Ingest a Bulk Data NDJSON file (one resource per line)."""
        return self._ingest(iter_ndjson(payload), version, origin, {})

    def ingest_path(
        self, path: Path, version: FhirVersionValues = FhirVersionValues.R4
    ) -> IngestReport:
        """Ingest a ``.json`` / ``.ndjson`` file, or every such file under a folder.

        Patient files go first (Bulk exports split resources by type), so fewer resources wait
        in the pending state for their Patient.
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
            data = file.read_bytes()
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
    ) -> IngestReport:
        report = IngestReport()
        parsed: list[ParsedResource] = []
        for part in parts:
            if isinstance(part, ParseFailure):
                where = _where(origin, part.location)
                self._reject(report, part.error, where, None, part.raw)
            else:
                parsed.append(part)
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
        where = _where(origin, part.location)
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
            report.count(rtype).rejected += 1
            self._reject(report, e, where, rtype, resource)
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
        where: str,
        rtype: str | None,
        original: Any,
    ) -> None:
        rejection = Rejection(where, rtype, error.reason.value, error.why)
        report.rejections.append(rejection)
        held = self._quarantine(original)
        outcome = operation_outcome([rejection], IngestReport())
        outcome["issue"] = outcome["issue"][:1]
        letter = build_dead_letter(
            stage=STAGE,
            reason=error.reason,
            error=f"{error.reason.value}: {where}: {error.why}",
            source_topic=f"{self.source}:{where}"[:200],
            source_partition=None,
            source_offset=None,
            key=None,
            payload=json.dumps({"operationOutcome": outcome, "quarantined": held}),
        )
        self.sink.send_dead_letter(letter)

    def _quarantine(self, original: Any) -> str | None:
        """Keep a rejected original on the ingress side (it may hold identifiers)."""
        if self.quarantine_dir is None or original is None:
            return None
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        held = self.quarantine_dir / f"{uuid.uuid4()}.json"
        if isinstance(original, bytes):
            held.write_bytes(original)
        elif isinstance(original, str):
            held.write_text(original)
        else:
            held.write_text(json.dumps(original))
        return held.name


def _is_bundle(document: Any) -> bool:
    return isinstance(document, dict) and document.get("resourceType") == "Bundle"


def _where(origin: str, location: str) -> str:
    return f"{origin}:{location}" if location else origin


def report_lines(report: IngestReport) -> list[str]:
    """A plain-text table of the counts by resource type, then the rejections."""
    lines = [f"{'resource type':24} {'received':>9} {'used':>6} {'ignored':>8} {'rejected':>9}"]
    for rtype, c in sorted(report.counts.items()):
        lines.append(f"{rtype:24} {c.received:9} {c.used:6} {c.ignored:8} {c.rejected:9}")
    total = sum(c.received for c in report.counts.values())
    lines.append(
        f"{'total':24} {total:9} {report.used:6} {report.ignored:8} "
        f"{sum(c.rejected for c in report.counts.values()):9}"
    )
    lines += [f"rejected  {r.reason}  {r.location}: {r.detail}" for r in report.rejections]
    return lines
