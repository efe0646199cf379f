"""What the consumer's watchdogs read and do on the Kafka client's own thread, and what they decide.

The coroutines take the aiokafka consumer (run through Faust's ``call_thread``); the plain
functions decide from Faust's bookkeeping alone, so unit tests need no broker
(``streams/faust_consumer.py`` uses both).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka.structs import TopicPartition
from faust.types import TP

#: A read offset past any record (what the ``read_offset_ahead`` fault leaves: crash tests only)
READ_AHEAD = 2**62

#: Records the agents are handling now, by (topic, partition)
#: (``streams.agents.base.handle_or_dead_letter`` counts them). The stalled-partition check
#: waits while an agent handles a record of the partition: Faust's own in-flight bookkeeping
#: did not show a study being quantified for 10 s (the paced bench, 2026-12-06: the partition
#: fetched again after 5 s, the study quantified twice).
HANDLING: Counter[tuple[str, int]] = Counter()
#: When an agent last finished a record of each (topic, partition) (``time.monotonic()``): a
#: partition handled within the last seconds is not standing still, its commit is on its way
LAST_HANDLED: dict[tuple[str, int], float] = {}


def unfetched_partitions(
    assigned: set[TP],
    active: set[TP],
    buffered: set[TP],
    *,
    queues_busy: bool,
    acked: Any,
) -> list[TP]:
    """Assigned stream partitions (``acked(topic)``) that Faust is not fetching.

    Less those held back because an agent queue is under pressure, while any queue holds
    records (Faust fetches them again once the queue drains).
    """
    return sorted(
        (
            tp
            for tp in assigned
            if acked(tp.topic) and tp not in active and not (queues_busy and tp in buffered)
        ),
        key=lambda tp: (tp.topic, tp.partition),
    )


async def waiting(consumer: Any, tps: Sequence[TP]) -> dict[TP, tuple[int, int]]:
    """(position, end) of each of ``tps`` still assigned with records past its position."""
    ends = await end_offsets(consumer, tps)
    at = await positions(consumer, list(ends))
    return {tp: (at[tp], end) for tp, end in ends.items() if tp in at and at[tp] < end}


def to_kafka(tp: TP) -> TopicPartition:
    """The aiokafka partition of a Faust one."""
    return TopicPartition(tp.topic, tp.partition)


async def positions(consumer: Any, tps: Sequence[TP]) -> dict[TP, int]:
    """The consumer's fetch position of each of ``tps`` still assigned (on its thread)."""
    assigned = consumer.assignment()
    return {tp: await consumer.position(to_kafka(tp)) for tp in tps if to_kafka(tp) in assigned}


async def log_starts(consumer: Any, tps: Sequence[TP]) -> dict[TP, int]:
    """The first offset the broker holds of each of ``tps`` still assigned (consumer thread)."""
    return await _broker_offsets(consumer, tps, consumer.beginning_offsets)


async def seek_to_start(consumer: Any, committed: Mapping[Any, int | None]) -> dict[TP, int]:
    """Seek each partition with no committed offset (None or 0) to its start (consumer thread).

    None: the log start offset (the group's ``earliest``); 0: offset 0. Partitions no longer
    assigned are left (their new owner seeks). Returns the offsets sought to.
    """
    assigned = consumer.assignment()
    sought: dict[TP, int] = {}
    for tp, offset in committed.items():
        kafka_tp = to_kafka(tp)
        if kafka_tp not in assigned:
            continue
        if offset is None:
            await consumer.seek_to_beginning(kafka_tp)
        else:
            consumer.seek(kafka_tp, 0)
        sought[TP(tp.topic, tp.partition)] = await consumer.position(kafka_tp)
    return sought


async def rewind_positions(consumer: Any, targets: Mapping[TP, int]) -> dict[TP, tuple[int, int]]:
    """Seek each partition back to its target offset (on the consumer's thread).

    Partitions no longer assigned are left, and so is one whose position is at or before its
    target (sought back since: a rebalance's seek to the committed offsets, a table recovery's
    to its changelog start). Returns the partitions sought: (target, position before).
    """
    before = await _seek_assigned(consumer, targets, back_only=True)
    return {tp: (targets[tp], position) for tp, position in before.items()}


async def end_offsets(consumer: Any, tps: Sequence[TP]) -> dict[TP, int]:
    """The end (next offset to be written) of each of ``tps`` still assigned."""
    return await _broker_offsets(consumer, tps, consumer.end_offsets)


async def _broker_offsets(consumer: Any, tps: Sequence[TP], ask: Any) -> dict[TP, int]:
    """What ``ask`` answers for ``tps`` still assigned, by Faust partition.

    ``ask``: the consumer's ``beginning_offsets`` or ``end_offsets``.
    """
    assigned = consumer.assignment()
    kafka_tps = [to_kafka(tp) for tp in tps if to_kafka(tp) in assigned]
    if not kafka_tps:
        return {}
    found = await ask(kafka_tps)
    return {TP(tp.topic, tp.partition): offset for tp, offset in found.items()}


def stalled_partitions(
    since: Mapping[TP, tuple[int, float]], now: float, stall_s: float
) -> list[TP]:
    """Partitions whose committed offset has stood (behind records waiting) for ``stall_s``.

    ``since`` maps each partition with records past its committed offset to (that offset, when
    it was first seen there).
    """
    return sorted(
        (tp for tp, (_, first_seen) in since.items() if now - first_seen >= stall_s),
        key=lambda tp: (tp.topic, tp.partition),
    )


async def seek_to(consumer: Any, targets: Mapping[TP, int]) -> dict[TP, int]:
    """Seek each partition still assigned to its target; the positions they were at."""
    return await _seek_assigned(consumer, targets, back_only=False)


async def _seek_assigned(
    consumer: Any, targets: Mapping[TP, int], *, back_only: bool
) -> dict[TP, int]:
    """Seek each partition still assigned to its target; the positions of those sought.

    ``back_only``: only where the target is behind the partition's position.
    """
    assigned = consumer.assignment()
    before: dict[TP, int] = {}
    for tp, target in targets.items():
        kafka_tp = to_kafka(tp)
        if kafka_tp not in assigned:
            continue
        position = await consumer.position(kafka_tp)
        if back_only and target >= position:
            continue
        consumer.seek(kafka_tp, target)
        before[tp] = position
    return before
