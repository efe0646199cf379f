"""The consumer's hole repair and refused acknowledgements: Faust's bookkeeping, no broker.

Faust takes a jump in offsets for a gap (compaction, a transaction marker), counts the skipped
offsets as acknowledged and commits past them; on our topics (not compacted, no transactional
producers) such a jump means records skipped before an agent got them (seen in test_crash's
worker logs, 2026-12-05). Here: a hole withholds the commit, a compacted topic keeps Faust's
gap, and a gap right after the seek back to a hole is accepted (the broker has nothing there).
A record a stream skips during a rebalance (flow control off) or from an earlier generation is
not acknowledged, so no commit passes it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import defaultdict

import pytest
from faust.types import TP, Message
from intervaltree import IntervalTree
from mode.utils.queues import FlowControlEvent

from streams import topics as t
from streams.consumer_offsets import unfetched_partitions
from streams.faust_consumer import Consumer
from streams.metrics import CONSUMER_REFUSED_ACKS

pytestmark = pytest.mark.unit

RISK = TP(t.CT_QUANTIFICATION.name, 1)
CONFIG = TP("triage.config", 0)
REASONS = ("rebalance", "earlier_generation")


def _consumer(committed: int) -> Consumer:
    """Faust's offset bookkeeping and ours, without an app (what the methods under test read)."""
    consumer = object.__new__(Consumer)
    consumer._gap = defaultdict(IntervalTree)
    consumer._acked = defaultdict(list)
    consumer._acked_index = defaultdict(set)
    consumer._committed_offset = defaultdict(lambda: None, {RISK: committed, CONFIG: committed})
    consumer._holes, consumer._refill, consumer._refilled = {}, {}, {}
    consumer._starts, consumer._given_from, consumer._sought_to = {}, {}, {}
    consumer._this_pass, consumer._pass_acked = {}, {}
    consumer._read_offset = defaultdict(lambda: None)
    consumer.assignment = lambda: {RISK, CONFIG}  # type: ignore[method-assign]
    return consumer


def _ack(consumer: Consumer, tp: TP, *offsets: int) -> None:
    for offset in offsets:
        if offset in consumer._acked_index[tp]:
            continue  # acknowledged already (Faust's ack skips it too)
        consumer._acked[tp].append(offset)
        consumer._acked_index[tp].add(offset)
    consumer._acked[tp].sort()


def test_a_jump_on_a_stream_topic_is_a_hole_and_nothing_is_committed_past_it() -> None:
    consumer = _consumer(committed=11)
    # after the seek to the committed offset 11, the first record handed out was 14: Faust calls
    # _add_gap(read offset + 1 = 12, 14); 11, 12 and 13 never reached an agent
    asyncio.run(consumer._add_gap(RISK, 12, 14))
    _ack(consumer, RISK, 14, 15)
    assert consumer._holes == {RISK: 11}
    assert consumer._new_offset(RISK) is None  # Faust alone: 16, past three lost records
    assert not consumer._gap[RISK]


def test_once_the_hole_is_handed_out_again_commits_go_on() -> None:
    consumer = _consumer(committed=11)
    asyncio.run(consumer._add_gap(RISK, 12, 14))
    _ack(consumer, RISK, 14, 15)
    assert consumer._new_offset(RISK) is None
    consumer._holes.pop(RISK)  # what getmany does when offset 11 is handed out after the seek
    _ack(consumer, RISK, 11, 12, 13, 14, 15)
    assert consumer._new_offset(RISK) == 16


def test_a_gap_right_after_the_seek_back_holds_no_record_and_stands() -> None:
    consumer = _consumer(committed=11)
    consumer._refilled[RISK] = 11  # sought back to 11; the broker's first record is 13
    asyncio.run(consumer._add_gap(RISK, 12, 13))
    _ack(consumer, RISK, 13)
    assert consumer._holes == {}
    assert consumer._new_offset(RISK) == 14


def test_a_compacted_topic_keeps_faust_gaps() -> None:
    consumer = _consumer(committed=11)
    asyncio.run(consumer._add_gap(CONFIG, 12, 14))  # compaction removed 12 and 13
    _ack(consumer, CONFIG, 11, 14)
    assert consumer._holes == {}
    assert consumer._new_offset(CONFIG) == 15


def test_a_record_at_the_committed_offset_skipped_by_the_agents_is_a_hole() -> None:
    consumer = _consumer(committed=6)
    # the survivor of a crash took the partition at committed offset 6; the first record
    # handed out to an agent was 7 (Faust saw no gap: right after a seek its read offset is 6)
    _ack(consumer, RISK, 7, 8, 9, 10)
    assert consumer._new_offset(RISK) is None  # Faust alone: 11, past the lost record 6
    assert consumer._holes == {RISK: 6}  # getmany seeks back to it
    consumer._holes.pop(RISK)  # 6 handed out again and processed
    _ack(consumer, RISK, 6)
    assert consumer._new_offset(RISK) == 11
    consumer.assignment = set  # type: ignore[method-assign]  # revoked: no hole, no seek
    _ack(consumer, RISK, 12)
    consumer._holes.clear()
    assert consumer._unacknowledged_head(RISK) is None


def test_a_record_at_the_committed_offset_being_processed_is_no_hole_and_not_passed() -> None:
    """An agent holds it while later records were acknowledged (by another agent): no seek
    back (it would fetch the partition again for nothing), and no commit past it."""
    consumer = _consumer(committed=6)
    queued = _message(6, generation=3)
    consumer._unacked_messages = {queued}
    _ack(consumer, RISK, 7, 8, 9, 10)
    assert consumer._new_offset(RISK) is None  # Faust alone: 11, past the queued record 6
    assert consumer._holes == {}
    consumer._unacked_messages = set()  # processed
    _ack(consumer, RISK, 6)
    assert consumer._new_offset(RISK) == 11


def test_a_copy_fetched_again_waiting_in_a_queue_is_no_hole_and_not_passed() -> None:
    """After the seek back to a hole its record is on its way (fetched again, then waiting in
    the agent's queue, where Faust does not track it): neither sought back again at each commit
    (the poison chaos run's refetch loop, 2026-12-07) nor committed past. A record skipped after
    a seek is a hole again."""
    consumer = _consumer(committed=6)
    _ack(consumer, RISK, 7, 8, 9, 10)  # first pass: 6 never reached an agent
    assert consumer._new_offset(RISK) is None
    assert consumer._holes == {RISK: 6}
    consumer._holes.pop(RISK)  # getmany sought back to 6; nothing fetched yet
    consumer._sought(RISK, 6)
    assert consumer._new_offset(RISK) is None
    assert consumer._holes == {}
    consumer._given_from[RISK], consumer._read_offset[RISK] = 6, 8  # 6-8 handed out, queued
    assert consumer._new_offset(RISK) is None  # not past 6...
    assert consumer._holes == {}  # ...and no second seek back
    _ack(consumer, RISK, 6)
    assert consumer._new_offset(RISK) == 11
    consumer._committed_offset[RISK] = 11
    _ack(consumer, RISK, 12)
    consumer._given_from[RISK], consumer._read_offset[RISK] = 12, 12  # 11 skipped after a seek
    assert consumer._new_offset(RISK) is None
    assert consumer._holes == {RISK: 11}


def test_a_record_lost_on_its_way_to_the_agent_is_a_hole() -> None:
    """Records reach the agent in order: 6 handed out, 7 of the same pass processed, 6 not."""
    consumer = _consumer(committed=6)
    consumer._sought(RISK, 6)
    consumer._given_from[RISK], consumer._read_offset[RISK] = 6, 8  # 6-8 handed out
    _ack(consumer, RISK, 7)  # a copy from before the seek: says nothing of this pass
    assert consumer._new_offset(RISK) is None
    assert consumer._holes == {}
    consumer._pass_acked[RISK] = 7  # what ack() notes for this pass's copy of 7
    assert consumer._new_offset(RISK) is None
    assert consumer._holes == {RISK: 6}


def test_a_head_gap_the_broker_left_is_no_hole() -> None:
    consumer = _consumer(committed=11)
    consumer._gap[RISK].addi(11, 13)  # a known gap: the broker has no record 11 or 12
    _ack(consumer, RISK, 13)
    assert consumer._new_offset(RISK) == 14
    assert consumer._holes == {}


class _App:
    """What ``Consumer.ack`` reads of the app: generation, flow control, acking topics."""

    def __init__(self, generation: int, flowing: bool) -> None:
        self.consumer_generation_id = generation
        self.flow_control = FlowControlEvent(initially_suspended=not flowing)
        self.topics = self

    def acks_enabled_for(self, topic: str) -> bool:
        return True


def _acking_consumer(generation: int, flowing: bool) -> Consumer:
    consumer = _consumer(committed=11)
    consumer.app = _App(generation, flowing)  # type: ignore[assignment]
    consumer._unacked_messages = set()
    consumer._n_acked = 0
    consumer._waiting_for_ack = None
    return consumer


def _message(offset: int, generation: int) -> Message:
    return Message(
        RISK.topic, RISK.partition, offset, 0.0, 0, None, b"k", b"v", None, tp=RISK,
        generation_id=generation,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("flowing", "generation", "refused"),
    [
        (True, 3, None),  # a record processed in the running generation: acknowledged
        (False, 3, "rebalance"),  # a rebalance began (Faust's stream skips it): refused
        (True, 2, "earlier_generation"),  # handed out before the last rebalance: refused
    ],
)
def test_a_skipped_record_is_not_acknowledged_and_no_commit_passes_it(
    flowing: bool, generation: int, refused: str | None
) -> None:
    counted = refused is None
    refusals = {r: CONSUMER_REFUSED_ACKS.labels(reason=r)._value.get() for r in REASONS}
    consumer = _acking_consumer(generation=3, flowing=flowing)
    consumer._acked[RISK] = [11]
    consumer._acked_index[RISK] = {11}
    message = _message(12, generation)
    consumer._unacked_messages.add(message)
    consumer._this_pass[RISK] = weakref.WeakSet([message])  # handed out since the last seek
    assert consumer.ack(message) is counted
    assert consumer._pass_acked.get(RISK) == (12 if counted else None)
    assert message.acked  # done with either way: a rebalance waiting for streams to empty goes on
    assert message not in consumer._unacked_messages
    assert consumer._new_offset(RISK) == (13 if counted else 12)
    for reason in REASONS:  # counted in the metric, by reason
        now = CONSUMER_REFUSED_ACKS.labels(reason=reason)._value.get()
        assert now == refusals[reason] + (reason == refused)


def test_a_partition_never_committed_has_its_start_for_committed_offset() -> None:
    """Faust keeps None for "never committed" and for 0: the head check then saw nothing.

    test_alert_log, 2026-12-06: the restarted worker handed out offsets 1 and 2 of two
    partitions the group had never committed and committed 3, past a record 0 no agent processed.
    """
    consumer = _consumer(committed=0)
    consumer._committed_offset[RISK] = None  # what Faust holds for both
    _ack(consumer, RISK, 1, 2)
    consumer._starts[RISK] = 0  # where the rebalance's seek sent the partition
    assert consumer._new_offset(RISK) is None  # withheld: 0 was never processed
    assert consumer._holes == {RISK: 0}
    consumer._holes.clear()
    _ack(consumer, RISK, 0)
    assert consumer._new_offset(RISK) == 3


def test_partitions_out_of_the_fetch_are_found_unless_held_back_by_queue_pressure() -> None:
    other = TP(t.CT_QUANTIFICATION.name, 2)
    changelog = TP("ctriage-alerted_studies-changelog", 1)  # paused on purpose: tables read it

    def stream(topic: str) -> bool:
        return not topic.endswith("-changelog")

    assigned = {RISK, other, changelog}
    assert unfetched_partitions(assigned, {RISK}, set(), queues_busy=False, acked=stream) == [other]
    # held back while its agent's queue drains: Faust fetches it again after
    assert unfetched_partitions(assigned, {RISK}, {other}, queues_busy=True, acked=stream) == []
    # every queue empty and still left out: nothing will bring it back
    assert unfetched_partitions(assigned, {RISK}, {other}, queues_busy=False, acked=stream) == [
        other
    ]
    assert unfetched_partitions(assigned, assigned, set(), queues_busy=False, acked=stream) == []
