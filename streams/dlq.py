"""Dead-lettering: every message an agent cannot process goes to ``<topic>.dlq`` with a reason.

A dead letter keeps the original payload, the source topic/partition/offset, the stage, a reason
code from a closed list and the exception text, so nothing is lost and it can be replayed.
"""

from __future__ import annotations

import logging
import time
from enum import StrEnum
from typing import Any

from streams.metrics import DEAD_LETTERS
from streams.records import DeadLetter

logger = logging.getLogger(__name__)


class StreamReason(StrEnum):
    """Reason codes the stream layer itself assigns (libraries bring their own closed lists)."""

    MALFORMED_RECORD = "malformed_record"
    UNSUPPORTED_URI = "unsupported_uri"
    STUDY_NOT_FOUND = "study_not_found"
    TRITON_UNAVAILABLE = "triton_unavailable"
    TRITON_TIMEOUT = "triton_timeout"
    TRITON_ERROR = "triton_error"
    INFERENCE_REJECTED = "inference_rejected"
    SCORING_FAILED = "scoring_failed"
    FORECAST_FAILED = "forecast_failed"
    STORE_UNAVAILABLE = "store_unavailable"
    INVALID_CONFIG = "invalid_config"
    PACS_WRITEBACK_FAILED = "pacs_writeback_failed"
    INTERNAL_ERROR = "internal_error"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def build_dead_letter(
    *,
    stage: str,
    reason: str,
    error: BaseException | str,
    source_topic: str,
    source_partition: int | None,
    source_offset: int | None,
    key: Any,
    payload: Any,
) -> DeadLetter:
    """Describe a failed message; counts it in the dead-letter metric."""
    DEAD_LETTERS.labels(stage=stage, reason=str(reason)).inc()
    detail = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    # a Kafka message says where it was (topic@partition/offset); an ingress input has no offset
    where = source_topic
    if source_partition is not None or source_offset is not None:
        where = f"{source_topic}@{source_partition}/{source_offset}"
    logger.warning("dead-lettered %s at %s: %s (%s)", where, stage, reason, detail)
    return DeadLetter(
        reason_code=str(reason),
        stage=stage,
        source_topic=source_topic,
        source_partition=source_partition,
        source_offset=source_offset,
        error=detail[:4000],
        payload=_text(payload),
        key=_text(key) or None,
        at=time.time(),
    )


async def dead_letter(
    dlq_topic: Any, event: Any, *, stage: str, reason: str, error: BaseException | str
) -> DeadLetter:
    """Send the Faust ``event`` being processed to ``dlq_topic`` and return the record.

    The dead letter keeps the message's bytes as received (``event.message.value``), whatever
    the topic decoded them into.
    """
    return await dead_letter_message(
        dlq_topic, event.message, event.key, stage=stage, reason=reason, error=error
    )


async def dead_letter_message(
    dlq_topic: Any,
    message: Any,
    key: Any,
    *,
    stage: str,
    reason: str,
    error: BaseException | str,
) -> DeadLetter:
    """Send a consumed Kafka message to ``dlq_topic`` under ``key``; return the record.

    ``message`` is Faust's or aiokafka's (``topic``, ``partition``, ``offset``, ``value``).
    """
    record = build_dead_letter(
        stage=stage,
        reason=reason,
        error=error,
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        key=key,
        payload=message.value,
    )
    await dlq_topic.send(key=key, value=record)
    return record
