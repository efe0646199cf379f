"""The consumer's hole repair: Faust's bookkeeping driven directly, no broker.

Faust takes a jump in offsets for a gap (compaction, a transaction marker), counts the skipped
offsets as acknowledged and commits past them; on our topics (not compacted, no transactional
producers) such a jump means records skipped before an agent got them (seen in test_crash's
worker logs, 2026-12-05). Here: a hole withholds the commit, a compacted topic keeps Faust's
gap, and a gap right after the seek back to a hole is accepted (the broker has nothing there).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from faust.types import TP
from intervaltree import IntervalTree

from streams import topics as t
from streams.faust_consumer import Consumer

pytestmark = pytest.mark.unit

RISK = TP(t.CT_QUANTIFICATION.name, 1)
CONFIG = TP("triage.config", 0)


def _consumer(committed: int) -> Consumer:
    """Faust's offset bookkeeping and ours, without an app (what the methods under test read)."""
    consumer = object.__new__(Consumer)
    consumer._gap = defaultdict(IntervalTree)
    consumer._acked = defaultdict(list)
    consumer._acked_index = defaultdict(set)
    consumer._committed_offset = defaultdict(lambda: None, {RISK: committed, CONFIG: committed})
    consumer._holes, consumer._refill, consumer._refilled = {}, {}, {}
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
