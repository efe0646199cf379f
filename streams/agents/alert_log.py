"""Alerts exactly once on ``triage.alerts``: a write-ahead entry, the send, then the memo.

Alerts are decided against ``alerted_studies`` (what each study already raised), and the memo
used to be written after the send: a worker killed between the two sent the alert again on
redelivery. Now, before the send, the alert itself is written to ``alerted_studies`` under the
patient's ``pending/<pseudonym>`` key, and the worker waits until the broker has that changelog
record. After the send, the memo is written and the entry removed (buffered, both on the same
changelog partition, in that order: the removal never lands without the memo).

Whoever next handles the patient (the worker restarted, or the one that took the partition
over) settles the patient's pending entries before deciding anything: an alert found on
``triage.alerts`` (read back from shortly before it was written ahead) is remembered and not
sent again; one not found is sent now. The memos the decision reads are then complete. Kafka
transactions would do this without the read-back; they were tried and not kept
(docs/fault-tolerance.md, "Alerts exactly once").

The FHIR twin on ``triage.alerts.fhir`` stays at-least-once (sent again when its alert is
settled): its consumers upsert by the RiskAssessment's id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams import topics as t
from streams.agents.base import send_confirmed
from streams.failpoints import failpoint
from streams.kafka_security import KafkaSecurity
from streams.metrics import ALERTS_SETTLED
from streams.pipeline import Pipeline
from streams.records import Alert

logger = logging.getLogger(__name__)

TABLE = "alerted_studies"
PENDING = "pending/"
#: The read-back starts this long before an entry was written (the same worker's clock wrote
#: both, so this only covers the broker's timestamp index granularity and batching).
READ_BACK_MARGIN_S = 60.0
READ_BACK_TIMEOUT_S = 60.0


async def set_durably(table: Any, key: str, value: Any) -> None:
    """Set ``table[key]`` and wait until the broker has the changelog record.

    A table write is buffered (Faust's ``send_soon``); a write-ahead entry must be on the broker
    before what it announces is sent.
    """
    sent = table.send_changelog(table.partition_for_key(key), key, value)
    table.data[key] = value  # the local store; the changelog record is the one above
    await sent


async def send_alert_once(
    pipeline: Pipeline,
    pseudonym: str,
    memo_key: str,
    memo: dict[str, Any],
    alert: Alert,
    fhir: dict[str, Any] | None = None,
) -> None:
    """Send ``alert`` (and its FHIR twin) once, and remember ``memo`` under ``memo_key``."""
    table = pipeline.tables[TABLE]
    entries = dict(table.get(PENDING + pseudonym) or {})
    entry = {
        "memo_key": memo_key,
        "memo": memo,
        "alert": alert.model_dump(mode="json"),
        "fhir": fhir,
        "written_at": time.time(),
    }
    entries[alert.alert_id] = entry
    await set_durably(table, PENDING + pseudonym, entries)
    failpoint(pipeline.settings.worker, "alert_written_ahead")
    await _send(pipeline, pseudonym, entry)
    failpoint(pipeline.settings.worker, "alert_sent")
    _remember(table, pseudonym, alert.alert_id, entry)


async def settle_pending_alerts(pipeline: Pipeline, pseudonym: str) -> int:
    """Settle the alerts a worker wrote ahead for ``pseudonym`` and did not finish (count).

    Nothing to do (one table lookup) unless a worker stopped between writing an alert ahead and
    remembering it.
    """
    table = pipeline.tables[TABLE]
    entries: dict[str, Any] = dict(table.get(PENDING + pseudonym) or {})
    if not entries:
        return 0
    since = min(entry["written_at"] for entry in entries.values()) - READ_BACK_MARGIN_S
    found = await asyncio.wait_for(alert_ids_since(pipeline, since), READ_BACK_TIMEOUT_S)
    for alert_id, entry in entries.items():
        if alert_id in found:
            outcome = "found"
            if entry["fhir"] is not None:  # the twin may not have followed; it is idempotent
                await _send_fhir(pipeline, pseudonym, entry["fhir"])
        else:
            outcome = "sent"
            await _send(pipeline, pseudonym, entry)
        _remember(table, pseudonym, alert_id, entry)
        ALERTS_SETTLED.labels(outcome=outcome).inc()
        logger.warning(
            "alert %s of %s was written ahead and not remembered (a worker stopped): %s",
            alert_id,
            pseudonym,
            "found on triage.alerts, not sent again" if outcome == "found" else "sent now",
        )
    return len(entries)


async def alert_ids_since(pipeline: Pipeline, since_s: float) -> set[str]:
    """The ids of the alerts on ``triage.alerts`` written at or after ``since_s`` (epoch s)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=pipeline.settings.kafka.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        **KafkaSecurity.from_settings(pipeline.settings.kafka).aiokafka(),
    )
    await consumer.start()
    try:
        topic = t.TRIAGE_ALERTS.name
        # co-partitioned with the inputs: created with the configured partition count
        partitions = [TopicPartition(topic, p) for p in range(pipeline.settings.kafka.partitions)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.offsets_for_times({tp: int(since_s * 1000) for tp in partitions})
        ids: set[str] = set()
        for tp in partitions:
            found = starts.get(tp)
            start = found.offset if found is not None else ends[tp]
            consumer.seek(tp, start)
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    try:
                        ids.add(str(json.loads(record.value)["alert_id"]))
                    except (ValueError, TypeError, KeyError):
                        continue  # not an alert: not one of ours
        return ids
    finally:
        await consumer.stop()


async def _send(pipeline: Pipeline, pseudonym: str, entry: dict[str, Any]) -> None:
    alert = Alert.model_validate(entry["alert"])
    await send_confirmed(pipeline.topic(t.TRIAGE_ALERTS.name), key=pseudonym.encode(), value=alert)
    if entry["fhir"] is not None:
        await _send_fhir(pipeline, pseudonym, entry["fhir"])


async def _send_fhir(pipeline: Pipeline, pseudonym: str, fhir: dict[str, Any]) -> None:
    topic = pipeline.topic(t.TRIAGE_ALERTS_FHIR.name)
    await send_confirmed(topic, key=pseudonym.encode(), value=json.dumps(fhir).encode())


def _remember(table: Any, pseudonym: str, alert_id: str, entry: dict[str, Any]) -> None:
    """The memo, then the entry's removal: one changelog partition, in this order."""
    table[entry["memo_key"]] = entry["memo"]
    entries = dict(table.get(PENDING + pseudonym) or {})
    entries.pop(alert_id, None)
    table[PENDING + pseudonym] = entries
