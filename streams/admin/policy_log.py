"""The alert policies in force and their audit trail, read from and written to Kafka.

``triage.config`` (compacted, key: hospital) holds each hospital's latest policy; ``triage.audit``
holds every change. :class:`PolicyLog` reads both from the beginning with a group-less consumer
(like every worker does for ``triage.config``), keeps following them, and publishes a change as a
new ``triage.config`` record plus its audit record. Used by the admin API and by
``ctriage thresholds set``; the validation itself is :func:`triage.thresholds.apply_change`.

Two writers racing on one hospital (two admins within the same instant) are serialised inside
one process by a lock; across processes the optional ``expected_version`` of a change refuses a
change prepared against a version that is no longer in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from streams import topics as t
from streams.kafka_security import PLAINTEXT, KafkaSecurity
from streams.records import ThresholdAudit, TriageConfig
from triage.alerts import AlertPolicy, AppliedChange, ThresholdChange, apply_change
from triage.exceptions import ConfigRejected, ConfigRejectionReason
from triage.fhir import threshold_audit_event
from triage.risk import RiskModel, calibrated_model, recalibrated_version

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolicyInForce:
    """A hospital's policy and the record that set it (None: the configured default)."""

    hospital: str
    policy: AlertPolicy
    record: TriageConfig | None


class PolicyLogError(RuntimeError):
    """Kafka could not be read or written in time (the message names the topic and timeout)."""


class PolicyLog:
    """Policies per hospital and their audit trail, kept current from Kafka."""

    def __init__(
        self,
        bootstrap_servers: str,
        default_policy: AlertPolicy,
        hospitals: Iterable[str],
        timeout_s: float = 10.0,
        security: KafkaSecurity = PLAINTEXT,
        risk_model_path: Path | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        #: the workers' risk model: a calibration is checked against it before it is published
        self.risk_model_path = risk_model_path
        self.security = security
        self.default_policy = default_policy
        self.hospitals = tuple(hospitals)
        self.timeout_s = timeout_s
        self._records: dict[str, TriageConfig] = {}
        self._policies: dict[str, AlertPolicy] = {}
        self._audits: dict[str, ThresholdAudit] = {}
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._follower: asyncio.Task[None] | None = None
        self.applied = asyncio.Event()  # set whenever a record is read (tests, benchmarks)

    async def start(self) -> None:
        """Read both topics to their end, then keep following them in the background."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self.security.aiokafka(),
        )
        producer = AIOKafkaProducer(  # idempotent: a retry after a broker died is written once
            bootstrap_servers=self.bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            **self.security.aiokafka(),
        )
        try:
            await asyncio.wait_for(self._catch_up(consumer), self.timeout_s)
            await asyncio.wait_for(producer.start(), self.timeout_s)
        except (TimeoutError, OSError, KafkaError) as e:
            await consumer.stop()
            await producer.stop()
            raise PolicyLogError(
                f"cannot read {t.TRIAGE_CONFIG.name}/{t.TRIAGE_AUDIT.name} from "
                f"{self.bootstrap_servers} within {self.timeout_s:g}s: {e!r}"
            ) from e
        self._consumer, self._producer = consumer, producer
        self._follower = asyncio.create_task(self._follow(consumer))

    async def stop(self) -> None:
        """Stop following and close the Kafka clients."""
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    def in_force(self, hospital: str) -> PolicyInForce:
        """The policy in force for ``hospital`` (the default until a record sets one)."""
        return PolicyInForce(
            hospital,
            self._policies.get(hospital, self.default_policy),
            self._records.get(hospital),
        )

    def known_hospitals(self) -> list[str]:
        """Hospitals administered here (other hospitals' records are followed, not served)."""
        return list(self.hospitals)

    def audit_trail(self, hospital: str) -> list[ThresholdAudit]:
        """Every recorded change of ``hospital``'s policy, oldest first."""
        trail = [a for a in self._audits.values() if a.hospital == hospital]
        return sorted(trail, key=lambda a: (a.changed_at, a.new_version))

    async def change(
        self, change: ThresholdChange, role: str, source: str
    ) -> tuple[AppliedChange, ThresholdAudit] | None:
        """Validate and publish a change; None when it changes nothing.

        Raises :class:`ConfigRejected` (the reason codes of :func:`apply_change`,
        ``unknown_hospital``, and ``calibration_model_mismatch`` / ``invalid_calibration`` for a
        calibration that does not fit the workers' model), :class:`ModelArtifactError` when
        that model does not load, and :class:`PolicyLogError` when Kafka does not acknowledge.
        """
        if change.hospital not in self.hospitals:
            raise ConfigRejected(
                ConfigRejectionReason.UNKNOWN_HOSPITAL,
                f"{change.hospital!r} is not administered here ({', '.join(self.hospitals)})",
            )
        if self._producer is None:
            raise PolicyLogError("the policy log is not started")
        async with self._lock:
            current = self.in_force(change.hospital).policy
            applied = apply_change(current, change)
            if applied is None:
                return None
            if applied.new.calibration is not None and self.risk_model_path is not None:
                # refused here, not dead-lettered by every worker (a layer fits one model)
                calibrated_model(RiskModel.load(self.risk_model_path), applied.new.calibration)
            changed_at = time.time()
            new = applied.new.to_dict()
            config = TriageConfig(
                hospital=change.hospital,
                threshold_version=applied.new.threshold_version,
                levels=new["levels"],
                alert_from=new["alert_from"],
                changed_by=applied.changed_by,
                reason=applied.reason,
                changed_at=changed_at,
                previous_version=applied.old.threshold_version,
                worsening=new.get("worsening"),
                calibration=new.get("calibration"),
            )
            audit = audit_record(applied, role, source, changed_at)
            key = change.hospital.encode()
            try:
                await asyncio.wait_for(
                    self._producer.send_and_wait(
                        t.TRIAGE_CONFIG.name, key=key, value=config.to_bytes()
                    ),
                    self.timeout_s,
                )
                await asyncio.wait_for(
                    self._producer.send_and_wait(
                        t.TRIAGE_AUDIT.name, key=key, value=audit.to_bytes()
                    ),
                    self.timeout_s,
                )
            except (TimeoutError, KafkaError) as e:
                raise PolicyLogError(
                    f"Kafka did not acknowledge the change of {change.hospital} within "
                    f"{self.timeout_s:g}s: {e!r}"
                ) from e
            self._take_config(config)
            self._audits[audit.audit_id] = audit
            logger.info(
                "alert policy of %s: %s -> %s by %s (%s)",
                change.hospital,
                applied.old.threshold_version,
                applied.new.threshold_version,
                applied.changed_by,
                role,
            )
            return applied, audit

    async def _catch_up(self, consumer: AIOKafkaConsumer) -> None:
        async def take(record: ConsumerRecord[bytes, bytes]) -> None:
            self._take(record)

        await consumer.start()
        await t.read_from_start(consumer, (t.TRIAGE_CONFIG.name, t.TRIAGE_AUDIT.name), take)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    self._take(record)

    def _take(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            if record.topic == t.TRIAGE_CONFIG.name:
                self._take_config(TriageConfig.model_validate_json(record.value or b""))
            else:
                audit = ThresholdAudit.model_validate_json(record.value or b"")
                self._audits[audit.audit_id] = audit
        except (ValidationError, ConfigRejected) as e:
            # the workers dead-letter it; here the previous policy simply stays in force
            logger.warning(
                "ignoring %s offset %s: %s", record.topic, record.offset, str(e).splitlines()[0]
            )
        self.applied.set()

    def _take_config(self, config: TriageConfig) -> None:
        policy = AlertPolicy.from_dict(config.model_dump())
        self._records[config.hospital] = config
        self._policies[config.hospital] = policy


def calibration_view(calibration: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A policy's site calibration as shown: its block, base and the version alerts carry."""
    if not calibration:
        return None
    return {
        "base_version": calibration["base_version"],
        "model_version": recalibrated_version(
            calibration["base_version"], calibration["site_calibration"]
        ),
        "site_calibration": calibration["site_calibration"],
    }


def audit_record(
    applied: AppliedChange, role: str, source: str, changed_at: float
) -> ThresholdAudit:
    """The audit record of an applied change, with its FHIR R4 AuditEvent."""
    old, new = applied.old.to_dict(), applied.new.to_dict()
    return ThresholdAudit(
        audit_id=applied.audit_id,
        hospital=applied.hospital,
        changed_by=applied.changed_by,
        role=role,
        source=source,
        changed_at=changed_at,
        old_version=applied.old.threshold_version,
        new_version=applied.new.threshold_version,
        old_policy=old,
        new_policy=new,
        reason=applied.reason,
        audit_event=threshold_audit_event(
            audit_id=applied.audit_id,
            hospital=applied.hospital,
            recorded=datetime.fromtimestamp(changed_at, tz=UTC).isoformat(),
            changed_by=applied.changed_by,
            role=role,
            source=source,
            old_policy=old,
            new_policy=new,
            reason=applied.reason,
        ),
    )
