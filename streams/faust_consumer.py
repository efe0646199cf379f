"""Faust's Kafka consumer, less the records a rebalance strands.

With Faust 0.15.3 and aiokafka 0.14, a worker that survived a crash sometimes served the dead
worker's partitions but processed nothing more from some of them, for minutes
(``tests/integration/test_crash.py`` failed about one run in two): the Kafka client had fetched
the records (its position was at the end of the partition) but Faust never handed them to an
agent, and since the position had moved on, nothing fetched them again until the next
rebalance. Two ways it happens were seen in worker logs:

- Faust drops the rest of a fetched batch when flow stops or the generation changes while it is
  handing the batch out (``Consumer.getmany``); when the drop comes after the rebalance has
  sought to the committed offsets, nothing seeks back. A table's changelog dropped so during a
  recovery left the recovery waiting forever ("No event received for active tp").
- Records fetched in the rebalance window never reached the hand-out at all (the worker's
  position ran past the last record it handed out while its fetch loop sat idle).

A record skipped so is lost for good once a later record of its partition is handed out: Faust
takes the jump in offsets for a gap (``_drain_messages`` -> ``_add_gap``: what a compacted topic
or a transaction marker leaves), counts the skipped offsets as acknowledged, and commits past
them (its ``_new_offset`` commits the first run of acknowledged offsets, wherever it starts).
This is how the killed-worker test lost studies with every offset committed (2026-12-05: a gap
of 3 records on ``ct.quantification`` right after the survivor's rebalance). So a gap on a topic
that is not compacted (ours have no transactional producers) is a hole: the partition is sent
back to it, nothing is committed past it until its first record is handed out again, and a gap
still there right after that seek holds no record (the broker has none to give) and is let be.

This consumer keeps Faust's, and adds repairs. A batch not handed out in full sends each
partition that lost records back to the first one lost. Watchdogs
(``streams/consumer_watchdogs.py``) look on timers, while no batch is being handed out and no
rebalance runs, for stream partitions whose position is past the last record handed out (or
committed), that Faust stopped fetching, or whose committed offset stands behind waiting
records; what they find is sought at the end of the next batch. No repair moves a partition
forward, nor back past a seek made since (a rebalance's or a table recovery's), nor sends a
partition back twice from the same position (a gap that stays holds no record: a transaction
marker). Records may be processed twice, which the agents tolerate (at-least-once); none is
left behind. Each repair is counted in ``ctriage_consumer_rewinds_total`` and logged.

Every seek is made at the end of a batch (the tail of :meth:`Consumer.getmany`), never from a
timer: Faust sets its read offset after each record it hands out, and a record below that offset
is dropped (``_drain_messages``, silently). A watchdog that sought while a batch fetched before
its seek was being handed out had its seek overwritten, and everything fetched again was then
dropped; that was the chaos runs' stalls (docs/fault-tolerance.md). A record handed out below
the read offset all the same (Faust's own table recovery seeks too) is seen there and its
partition sent back to it (``ctriage_consumer_dropped_batches_total``).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from logging import WARNING
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from mode.utils.futures import notify

from streams import consumer_offsets as offsets
from streams.consumer_watchdogs import Watchdogs
from streams.metrics import (
    CONSUMER_DROPPED,
    CONSUMER_REFUSED_ACKS,
    CONSUMER_REWINDS,
)
from streams.topics import ALL_TOPICS

logger = logging.getLogger(__name__)

#: How long a broker may hold a fetch that finds no new record (Faust asks for 1,500 ms). A
#: broker answers one request of a connection at a time, so every other request on the same
#: connection (offset lookups of table recovery and of the watchdogs, commits where the group
#: coordinator leads partitions too) waited behind that long poll: each of Faust's recovery
#: steps took 1.4-1.6 s in the 1,000-study chaos runs of 2026-12-07, and one offsets lookup
#: 0.5 s at aiokafka's own 500 ms. Records still come back as soon as there are any.
FETCH_MAX_WAIT_MS = 200
#: Longest wait of one ``getmany`` on the Kafka client's thread (Faust asks for 1 s): calls on
#: that thread (recovery, commits, the watchdogs' looks) are served by two workers, and an idle
#: fetch holds one of them for the whole wait.
FETCH_WAIT_S = 0.2
#: Topics where a jump in offsets is expected (compaction removed records): Faust's gaps stand.
COMPACTED_TOPICS = frozenset(spec.name for spec in ALL_TOPICS if spec.compacted)


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's Kafka client thread, with fetches held at most ``FETCH_MAX_WAIT_MS``."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes a fixed 1,500 ms; aiokafka reads it when start() makes its fetcher
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class Consumer(Watchdogs, faust_aiokafka.Consumer):
    """Faust's aiokafka consumer that fetches again what a rebalance left behind."""

    # the state the watchdogs share is declared there (streams/consumer_watchdogs.py)
    _batch: Mapping[Any, Sequence[Any]] | None = None
    _handing_out: bool = False
    _given_from: dict[TP, int]
    _sought_to: dict[TP, int]
    _this_pass: dict[TP, weakref.WeakSet[Message]]
    _pass_acked: dict[TP, int]
    _starts: dict[TP, int]
    #: fault injection (crash tests only, streams/failpoints.py): partitions whose next seek
    #: back leaves Faust's read offset far ahead, so Faust drops what it fetches again
    faults_read_ahead: set[TP]

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def on_init(self) -> None:
        """Faust's state, and the first lost offset of each partition waiting to be sought."""
        super().on_init()
        self._lost = {}
        self._suspects = {}
        #: the position each partition was last sent back from: a gap still there after that
        #: holds no record to hand out (a transaction marker), and is not sought again
        self._sought_from = {}
        #: first offset of a hole (records skipped, not handed out): no commit past it
        self._holes = {}
        #: holes sought back to, until their first record is handed out again
        self._refill = {}
        #: holes just handed out again (for the gap check of that same record)
        self._refilled = {}
        #: the first record handed out since the partition's last seek: from it to Faust's read
        #: offset every record went to an agent's queue (records come in order after a seek)
        self._given_from = {}
        #: where the partition's last seek went: until a record is handed out after it, the
        #: records from there on are coming (not holes)
        self._sought_to = {}
        #: the records handed out since the partition's last seek (while queued or in flight),
        #: and the highest of them acknowledged: a partition's records reach an agent in order,
        #: so one of them still unacknowledged below it never will (it was lost on the way)
        self._this_pass = {}
        self._pass_acked = {}
        #: where a partition the group never committed (or committed at 0) was sought to: what
        #: stands for its committed offset until the first commit (Faust keeps None for both)
        self._starts = {}
        #: stream partitions with records waiting that Faust was not fetching at the last
        #: look, and their position then
        self._unfetched = {}
        #: stream partitions with records past their committed offset while every agent was
        #: idle: (that offset, when first seen so)
        self._stalls = {}
        #: when a partition standing still for another reason last said why
        self._stall_reported = {}
        #: what the watchdogs found, sought at the next safe point (the end of a batch): the
        #: stranded partitions' first record, the stalled ones' (committed offset, end)
        self._to_seek = {}
        self._to_fetch = {}
        self.faults_read_ahead = set()

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """The seek to the committed offsets, made real where none (or 0) is committed.

        aiokafka seeks a partition only when its committed offset is above 0 and leaves the
        others where the fetcher stands: past records fetched during the rebalance and dropped
        before an agent got them. A restarted worker of a group that never committed a
        partition then served it and processed nothing (tests/integration/test_alert_log.py,
        2026-12-06: 7 of 8 studies stranded, the positions at the ends, nothing committed).
        Such stream partitions are sought to where the group starts (``earliest``: the log
        start; 0 committed: offset 0), as the seek means to.
        """
        committed: Mapping[TP, int] = await super().seek_to_committed()
        self._given_from.clear()
        self._this_pass.clear()
        self._pass_acked.clear()
        self._sought_to = {TP(tp.topic, tp.partition): o for tp, o in committed.items() if o}
        if self.app.conf.consumer_auto_offset_reset != "earliest":
            return committed
        acked = self.app.topics.acks_enabled_for
        unsought = {tp: o for tp, o in committed.items() if not o and acked(tp.topic)}
        if unsought:
            thread = self._thread
            consumer = thread._ensure_consumer()  # type: ignore[attr-defined]
            self._starts.update(await thread.call_thread(offsets.seek_to_start, consumer, unsought))
            self._sought_to.update(self._starts)
        return committed

    async def seek(self, partition: TP, offset: int) -> None:
        """Faust's seek (a table recovery's): what was handed out before is not on its way."""
        await super().seek(partition, offset)
        self._sought(TP(partition.topic, partition.partition), offset)

    def _sought(self, tp: TP, offset: int) -> None:
        """A seek of ``tp`` to ``offset``: the records from there on are coming again."""
        self._given_from.pop(tp, None)
        self._this_pass.pop(tp, None)
        self._pass_acked.pop(tp, None)
        self._sought_to[tp] = offset

    def _committed(self, tp: TP) -> int | None:
        """The committed offset, or where the partition started when none was committed yet.

        Without the start, a group's first records could be passed: Faust's commit check and
        our head check both need a committed offset, and Faust keeps None for "none" and for 0
        (test_alert_log, 2026-12-06: offsets 1-2 handed out and committed 3 on two partitions
        whose record 0 no agent had processed).
        """
        committed = self._committed_offset.get(tp)
        return committed if committed is not None else self._starts.get(tp)

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:
        records, active_partitions = await super()._wait_next_records(timeout)
        self._batch = records
        self._handing_out = bool(records)  # until getmany has handed the batch out
        return records, active_partitions

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """Faust's batch, then the repairs, at the one point where seeking is safe.

        A partition whose records were not all given, or were dropped by Faust (below its read
        offset), is sent back to the first such record; then whatever the watchdogs found. At
        the end of a batch every record of it has been handed out (Faust has moved its read
        offsets past them) and no fetch is under way, so a seek made here is not overwritten by
        a record fetched before it. The watchdogs used to seek from their timers, while Faust
        could be handing out such a batch: its read offset then jumped past the seek, and Faust
        dropped everything fetched again below it, without a word (the chaos runs' stalls).
        """
        self._batch = None
        given: dict[TP, int] = {}
        dropped: dict[TP, tuple[int, int]] = {}
        try:
            async for tp, message in super().getmany(min(timeout, FETCH_WAIT_S)):
                given[tp] = given.get(tp, 0) + 1
                read = self._read_offset.get(tp)
                if read is not None and message.offset < read:
                    # Faust's _drain_messages drops it (below its read offset), with no log; a
                    # partition's records come in order: the first dropped is the one to go back to
                    dropped.setdefault(tp, (message.offset, read))
                if read is None or message.offset >= read:
                    self._given_from.setdefault(tp, message.offset)
                    self._this_pass.setdefault(tp, weakref.WeakSet()).add(message)
                refill = self._refill.get(tp)
                if refill is not None and message.offset >= refill:
                    del self._refill[tp]  # the hole's records come again: commits may pass it
                    self._holes.pop(tp, None)
                    self._refilled[tp] = refill
                yield tp, message
                self._refilled.pop(tp, None)
        finally:
            self._handing_out = False
        batch: Mapping[Any, Sequence[Any]] = self._batch or {}
        self._batch = None
        # a partition's records are handed out in order: the first not given was lost, and all
        # after it
        for key, fetched in batch.items():
            tp = TP(key.topic, key.partition)
            if given.get(tp, 0) < len(fetched):
                first = fetched[given.get(tp, 0)].offset
                self._lost[tp] = min(first, self._lost.get(tp, first))
        if not self.flow_active or self.should_stop:
            return
        if dropped:
            await self._seek_dropped(dropped)
        if self._lost:
            await self._rewind_lost()
        holes = {tp: h for tp, h in self._holes.items() if tp not in self._refill}
        if holes:
            await self._seek_holes(holes)
        if self._to_seek or self._to_fetch:
            await self._seek_found()

    async def _seek_dropped(self, dropped: Mapping[TP, tuple[int, int]]) -> None:
        """Send each partition back to the first record Faust dropped below its read offset."""
        for tp, (first, read) in dropped.items():
            CONSUMER_DROPPED.inc()
            logger.warning(
                "records of %s-%d were dropped by Faust from %d on (below its read offset %d; "
                "last sent back from %s): fetching them again",
                tp.topic, tp.partition, first, read, self._sought_from.get(tp),
            )  # fmt: skip
        await self._seek_back({tp: first for tp, (first, _) in dropped.items()})

    async def _seek_found(self) -> None:
        """The watchdogs' findings, for partitions still assigned, sought now."""
        assigned = self._assigned()
        to_seek, self._to_seek = self._to_seek, {}
        to_fetch, self._to_fetch = self._to_fetch, {}
        stranded = {tp: o for tp, o in to_seek.items() if tp in assigned}
        if stranded:
            await self._seek_back(stranded)
        # looked at again now: an agent may have taken one of its records since the timer saw it
        blockers = self._stall_blockers([tp for tp in to_fetch if tp in assigned])
        stalled = {tp: v for tp, v in to_fetch.items() if tp in blockers and not blockers[tp]}
        if stalled:
            await self._fetch_again(stalled)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust's gap, kept only where no record can be missing; otherwise a hole to fill.

        ``offset_from`` is one past Faust's read offset, which is the last record handed out or,
        right after a seek, the offset sought (not handed out yet): the hole starts one before
        it, and never before the committed offset.
        """
        refilled = self._refilled.get(tp)
        if refilled is not None:
            # the first record after seeking back to the hole: the broker has nothing before it
            # (added as is: Faust's own _add_gap starts one past the committed offset)
            self._gap[tp].addi(refilled, offset_to)
            return
        if tp.topic in COMPACTED_TOPICS:
            await super()._add_gap(tp, offset_from, offset_to)
            return
        committed = self._committed(tp)
        start = offset_from - 1 if committed is None else max(offset_from - 1, committed)
        self._holes[tp] = min(start, self._holes.get(tp, start))
        logger.warning(
            "records %d-%d of %s-%d skipped before an agent got them: fetching them again",
            start,
            offset_to - 1,
            tp.topic,
            tp.partition,
        )

    def _new_offset(self, tp: TP) -> int | None:
        """Faust's next commit offset, withheld while the partition has a hole before it.

        A record at the committed offset itself that was never acknowledged while later ones
        were is a hole too: Faust's own check of the head of its acknowledged offsets is off by
        one (``min(acked) - committed > 1``, the committed offset being the *next* record to
        read), so it commits past exactly one record no agent processed. The survivor of
        test_crash lost a study so (2026-12-05: ``ct.quantification-0`` committed at 6 by the
        killed worker, the survivor's first record handed out 7, committed 11).
        """
        committed = self._committed(tp)
        if committed is not None and (
            self._in_flight(tp, committed) or self._on_its_way(tp, committed)
        ):
            # an agent is processing it, or it waits in an agent's queue, while later records
            # were acknowledged (another agent on the topic, or a copy fetched again): Faust
            # would commit past it (the off-by-one below), and it is no hole: seeking back
            # would fetch it again for nothing
            return None
        head = self._unacknowledged_head(tp)
        if head is not None:
            if self._holes.get(tp) is None:
                # what the acknowledgement bookkeeping holds, for the case not explained yet
                # (docs/fault-tolerance.md: a record scored again and again, never counted)
                logger.warning(
                    "record %d of %s-%d never acknowledged, later ones were: fetching it again "
                    "(in Faust's acked index: %s; first acked %s; %d in flight on the partition)",
                    head, tp.topic, tp.partition, head in self._acked_index.get(tp, ()),
                    sorted(self._acked.get(tp) or [])[:3],
                    sum(1 for m in list(getattr(self, "_unacked_messages", ())) if m.tp == tp),
                )  # fmt: skip
            self._holes[tp] = min(head, self._holes.get(tp, head))
            return None
        offset: int | None = super()._new_offset(tp)
        hole = self._holes.get(tp)
        if offset is not None and hole is not None and offset > hole:
            return None
        return offset

    def _unacknowledged_head(self, tp: TP) -> int | None:
        """The committed offset, when records from it on were skipped by every agent (else None).

        On a compacted topic, or where Faust's gaps cover the skipped offsets, nothing is
        missing (compaction removed them, or the broker has no record there).
        """
        committed = self._committed(tp)
        acked = self._acked.get(tp)
        if tp.topic in COMPACTED_TOPICS or committed is None or not acked:
            return None
        if tp not in self._assigned():
            return None  # revoked: Faust does not commit it, its new owner seeks
        first = min(acked)
        if first <= committed:
            return None
        covered: set[int] = set()
        for interval in self._gap[tp].overlap(committed, first) if tp in self._gap else ():
            covered.update(range(max(interval.begin, committed), min(interval.end, first)))
        return None if len(covered) == first - committed else committed

    def _on_its_way(self, tp: TP, offset: int) -> bool:
        """Whether record ``offset`` waits in a queue: handed out since the last seek, not acked.

        Faust tracks a record only once its agent takes it from the queue, so a copy fetched
        again after a seek back waits there unseen by :meth:`_in_flight`. Taken for a hole, it
        was sought back to again at every commit while it waited: with a short fetch wait the
        poison chaos run fetched its partitions 18 times over (2026-12-07: 124 dead letters
        for 100). A partition's records reach its agent in the order handed out, so one still
        unacknowledged below a record of the same pass that was acknowledged was lost on the way
        (the next poison run, 2026-12-07: records 1-4 of a partition handed out after 0, never
        processed, while 5 on were): a hole, sought back to at once, not left to the
        stalled-partitions check, which waits for every agent queue to empty.
        """
        if offset in self._acked_index.get(tp, ()):
            return False  # processed: not waiting any more
        first, read, hole = self._given_from.get(tp), self._read_offset.get(tp), self._holes.get(tp)
        if first is None:
            # nothing handed out since the last seek: what it went back to is still coming
            sought = self._sought_to.get(tp)
            return sought is not None and sought <= offset
        if read is None or not first <= offset <= read:
            return False
        if self._pass_acked.get(tp, -1) > offset:
            return False  # a later record of the same pass was processed: this one was lost
        return hole is None or hole > offset

    def _in_flight(self, tp: TP, offset: int) -> bool:
        """Whether record ``offset`` of ``tp`` was handed out and is not acknowledged yet."""
        unacked = getattr(self, "_unacked_messages", ())
        return any(m.tp == tp and m.offset == offset for m in list(unacked))

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """Faust's revocation; the holes of revoked partitions go (their new owner seeks)."""
        await super().on_partitions_revoked(revoked)
        for tp in revoked:
            for state in (self._holes, self._refill, self._refilled, self._lost, self._starts,
                          self._to_seek, self._to_fetch, self._given_from,
                          self._sought_to, self._this_pass, self._pass_acked):  # fmt: skip
                state.pop(tp, None)

    async def _seek_holes(self, holes: Mapping[TP, int]) -> None:
        rewound = await self._seek_back(holes)
        for tp, offset in holes.items():
            if tp in rewound:
                self._refill[tp] = offset
            else:  # sought back since (a rebalance: to the committed offset, before the hole)
                self._holes.pop(tp, None)

    def ack(self, message: Message) -> bool:
        """Faust's acknowledgement, refused while a rebalance runs or to an earlier one's record.

        Faust's streams skip a record *and acknowledge it* (``Stream.__aiter__``, "so the lag
        does not grow") in two cases: its generation is not the consumer's (handed out before
        the last rebalance), or flow control is off (a rebalance has begun: partitions revoked,
        the generation not yet bumped). Its offset then counts as done, and the next commit (the
        periodic one runs through a rebalance) passes a record no agent processed: the
        restarted worker of test_crash_restart lost a study so, committed past and never
        scored (2026-12-05). Refused here, the record comes again: the rebalance ends with a seek
        to the committed offsets, and that copy is acknowledged when processed. A record
        processed to the end while the rebalance began is then processed twice (at-least-once,
        which the agents tolerate: same ids, ``alerted_studies``).
        """
        generation = getattr(message, "generation_id", None)
        stale = generation is not None and generation != self.app.consumer_generation_id
        if stale or not self.app.flow_control.is_active():
            reason = "earlier_generation" if stale else "rebalance"
            CONSUMER_REFUSED_ACKS.labels(reason=reason).inc()
            logger.info(
                "%s-%d@%d not acknowledged (%s): it comes again after the rebalance",
                message.topic, message.partition, message.offset, reason,
            )  # fmt: skip
            message.acked = True  # this copy is done with; the new one is tracked on its own
            self._unacked_messages.discard(message)
            notify(self._waiting_for_ack)  # a rebalance waiting for the streams to empty goes on
            return False
        acked: bool = super().ack(message)
        tp = message.tp
        if acked and message in self._this_pass.get(tp, ()):
            self._pass_acked[tp] = max(message.offset, self._pass_acked.get(tp, -1))
        return acked

    async def _rewind_lost(self) -> None:
        lost, self._lost = self._lost, {}
        # records handed out since the loss (a seek fetched them again) are not lost any more;
        # the read offset is the last record handed out, or the offset a seek went to (not
        # handed out yet): from it on, at the price of one record processed twice
        targets = {}
        for tp, first in lost.items():
            read = self._read_offset.get(tp)
            targets[tp] = first if read is None else max(first, read)
        await self._seek_back(targets)

    async def _seek_back(self, targets: Mapping[TP, int]) -> dict[TP, tuple[int, int]]:
        check = "fetching again the records a rebalance left"
        found = await self._on_client(check, offsets.rewind_positions, targets, level=WARNING)
        if found is None:
            return {}
        rewound: dict[TP, tuple[int, int]] = found
        for tp, (offset, position) in rewound.items():
            self._read_offset[tp] = offset
            self._sought(tp, offset)
            if tp in self.faults_read_ahead:  # crash tests only (streams/failpoints.py)
                self.faults_read_ahead.discard(tp)
                self._read_offset[tp] = offsets.READ_AHEAD
            self._sought_from[tp] = position
            CONSUMER_REWINDS.inc()
            logger.warning(
                "records %d-%d of %s-%d never reached an agent: fetching them again",
                offset,
                position - 1,
                tp.topic,
                tp.partition,
            )
        return rewound
