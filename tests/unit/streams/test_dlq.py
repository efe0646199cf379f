"""Dead letters of consumed messages: where they were, why, and the bytes as received."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from streams.dlq import StreamReason, dead_letter, dead_letter_message
from streams.metrics import DEAD_LETTERS
from streams.records import DeadLetter

pytestmark = pytest.mark.unit


class Sent:
    """A topic that keeps what is sent to it."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, DeadLetter]] = []

    async def send(self, key: Any, value: DeadLetter) -> None:
        self.sent.append((key, value))


def _record(value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="triage.config", partition=2, offset=41, timestamp=0, timestamp_type=0,
        key=b"hospital-7", value=value, checksum=None, serialized_key_size=10,
        serialized_value_size=len(value), headers=(),
    )  # fmt: skip


def _count(stage: str, reason: str) -> float:
    return DEAD_LETTERS.labels(stage=stage, reason=reason)._value.get()


def test_an_aiokafka_record_is_dead_lettered_with_its_place_bytes_and_reason() -> None:
    topic = Sent()
    before = _count("config", StreamReason.INVALID_CONFIG)
    letter = asyncio.run(
        dead_letter_message(
            topic, _record(b"{not json\x00"), b"hospital-7",
            stage="config", reason=StreamReason.INVALID_CONFIG, error=ValueError("bad policy"),
        )
    )  # fmt: skip
    assert topic.sent == [(b"hospital-7", letter)]
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "triage.config", 2, 41,
    )  # fmt: skip
    assert letter.reason_code == "invalid_config"
    assert letter.error == "ValueError: bad policy"
    assert letter.payload == "{not json\x00"
    assert letter.key == "hospital-7"
    assert _count("config", StreamReason.INVALID_CONFIG) == before + 1


def test_a_faust_event_is_dead_lettered_from_its_message() -> None:
    topic = Sent()
    message = SimpleNamespace(topic="ct.studies", partition=0, offset=7, value=b"\xff\xfe")
    event = SimpleNamespace(message=message, key="study-1")
    letter = asyncio.run(
        dead_letter(topic, event, stage="quantify", reason="malformed_record", error="not a record")
    )
    assert topic.sent == [("study-1", letter)]
    assert (letter.source_topic, letter.source_offset, letter.key) == ("ct.studies", 7, "study-1")
    assert letter.error == "not a record"
    assert letter.payload == "\ufffd\ufffd"  # bytes kept as text, undecodable ones replaced
