"""Replay a synthetic cohort into Kafka in accelerated time (an ingress source).

The replay is an ingress stage: it pseudonymises patient ids and FHIR resources before anything
reaches a topic. A resource that cannot be pseudonymised never goes downstream with its
identifiers: its dead letter on ``fhir.resources.dlq`` names the reason and the quarantine file
(kept on the ingress side) instead of carrying the payload.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from streams import topics as t
from streams.dlq import build_dead_letter
from streams.kafka_security import PLAINTEXT, KafkaSecurity
from streams.records import CtStudy, FhirResourceEvent
from streams.sources.quarantine import Quarantine
from triage.cohort import load_manifest
from triage.exceptions import FhirRejected
from triage.fhir import Pseudonymiser, patient_key

logger = logging.getLogger(__name__)

SOURCE = "replay"
_EVENTS = uuid.uuid5(uuid.NAMESPACE_URL, "https://ctriage.invalid/replay")


@dataclass(frozen=True)
class ReplayItem:
    """One thing to publish at ``offset_s`` of clinical time after the cohort start."""

    offset_s: float
    kind: str  # "fhir" or "ct"
    path: Path
    event_time: str
    study: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReplayReport:
    """What the replay published."""

    studies: int = 0
    fhir_resources: int = 0
    rejected: int = 0
    study_uids: list[str] = field(default_factory=list)


def timeline(cohort_dir: Path) -> tuple[list[ReplayItem], str]:
    """Every FHIR bundle and CT study of a cohort, in clinical-time order, and the hospital."""
    manifest = load_manifest(cohort_dir)
    start = manifest.start_time
    items = [ReplayItem(0.0, "fhir", cohort_dir / manifest.census_bundle, start.isoformat())]
    for study in manifest.studies:
        fhir_at = start.timestamp() + study.fhir_offset_s
        items.append(
            ReplayItem(
                study.fhir_offset_s,
                "fhir",
                cohort_dir / study.fhir_bundle,
                _iso(fhir_at, start.tzinfo),
            )
        )
        items.append(
            ReplayItem(
                study.offset_s,
                "ct",
                cohort_dir / study.study_dir,
                study.ct_time.isoformat(),
                {"patient_id": study.patient_id, "study_uid": study.study_uid},
            )
        )
    items.sort(key=lambda item: (item.offset_s, item.kind != "fhir"))
    return items, manifest.hospital


def _iso(epoch_s: float, tz: Any) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(epoch_s, tz=tz).isoformat()


def fhir_events(
    bundle: dict[str, Any], pseudonymiser: Pseudonymiser, event_time: str, hospital: str
) -> Iterator[FhirResourceEvent]:
    """Pseudonymise a Bundle and yield one event per patient-linked resource."""
    clean = pseudonymiser.resource(bundle)
    for entry in clean.get("entry") or []:
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            continue
        pseudonym = patient_key(resource)
        yield FhirResourceEvent(
            event_id=str(
                uuid.uuid5(_EVENTS, f"{pseudonym}|{json.dumps(resource, sort_keys=True)}")
            ),
            patient_pseudonym=pseudonym,
            resource_type=str(resource.get("resourceType")),
            resource=resource,
            source=SOURCE,
            event_time=event_time,
            published_at=time.time(),
            hospital=hospital,
        )


def ct_event(item: ReplayItem, pseudonymiser: Pseudonymiser, hospital: str) -> CtStudy:
    """The claim-check event of one CT study."""
    study_uid = item.study["study_uid"]
    return CtStudy(
        event_id=str(uuid.uuid5(_EVENTS, study_uid)),
        study_uid=study_uid,
        patient_pseudonym=pseudonymiser.patient(item.study["patient_id"]),
        study_uri=item.path.resolve().as_uri(),
        source=SOURCE,
        ct_time=item.event_time,
        published_at=time.time(),
        hospital=hospital,
    )


def replay(
    cohort_dir: Path,
    bootstrap_servers: str,
    pseudonymiser: Pseudonymiser,
    speed: float,
    quarantine_dir: Path,
    on_study: Callable[[CtStudy], None] | None = None,
    security: KafkaSecurity = PLAINTEXT,
) -> ReplayReport:
    """Publish a cohort's FHIR resources and CT events, ``speed`` times faster than real time."""
    items, hospital = timeline(cohort_dir)
    report = ReplayReport()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5, **security.kafka_python()
    )
    started = time.monotonic()
    try:
        for item in items:
            wait_s = item.offset_s / speed - (time.monotonic() - started)
            if wait_s > 0:
                time.sleep(wait_s)
            if item.kind == "ct":
                study = ct_event(item, pseudonymiser, hospital)
                producer.send(
                    t.CT_STUDIES.name,
                    key=study.patient_pseudonym.encode(),
                    value=study.to_bytes(),
                )
                report.studies += 1
                report.study_uids.append(study.study_uid)
                if on_study is not None:
                    on_study(study)
                continue
            bundle = json.loads(item.path.read_text())
            try:
                events = list(fhir_events(bundle, pseudonymiser, item.event_time, hospital))
            except FhirRejected as e:
                _quarantine(producer, item.path, bundle, e, quarantine_dir)
                report.rejected += 1
                continue
            for event in events:
                producer.send(
                    t.FHIR_RESOURCES.name,
                    key=event.patient_pseudonym.encode(),
                    value=event.to_bytes(),
                )
                report.fhir_resources += 1
        producer.flush()
    finally:
        producer.close()
    return report


def _quarantine(
    producer: KafkaProducer,
    source: Path,
    bundle: dict[str, Any],
    error: FhirRejected,
    quarantine_dir: Path,
) -> None:
    """Keep a rejected bundle at ingress (private, bounded) and dead-letter it without PHI.

    The dead letter names neither the file (a cohort names it after the raw patient id) nor
    the resource id: only the reason, its explanation and the quarantined file's random name.
    """
    held = Quarantine(quarantine_dir).hold(bundle)
    letter = build_dead_letter(
        stage="ingress",
        reason=error.reason,
        error=f"{error.why} (payload held at ingress: {held})",
        source_topic=SOURCE,
        source_partition=None,
        source_offset=None,
        key=None,
        payload=json.dumps({"quarantined": held}),
    )
    producer.send(t.FHIR_RESOURCES.dlq, value=letter.to_bytes())
