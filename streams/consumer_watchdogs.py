"""The consumer's watchdogs: looks, on timers, for stream partitions Faust stopped serving.

Part of :class:`streams.faust_consumer.Consumer` (a mixin: the looks read and fill its
bookkeeping, and what they find is sought at the end of the next batch, the one point where a
seek is safe; see that module). Three looks, each every :data:`STRANDED_CHECK_S`:

- stranded: a partition whose position is past the last record handed out (or committed), seen
  twice in a row, is sent back there;
- unfetched: a partition Faust stopped fetching (not paused for a recovery, not under queue
  pressure) with records waiting, seen twice, is resumed;
- stalled, the last resort: a partition whose committed offset stands behind records waiting
  for :data:`STALL_S` while nothing of it is in flight and every agent queue is empty has its
  bookkeeping reset and is fetched again from the committed offset.

Each look asks the brokers on the Kafka client's thread (:meth:`Watchdogs._on_client`) and does
nothing during a rebalance or a table recovery.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from faust.types import TP
from mode import Service

from streams import consumer_offsets as offsets
from streams.metrics import CONSUMER_RESUMED, CONSUMER_STALLS

if TYPE_CHECKING:
    from faust.transport.drivers.aiokafka import Consumer as _Base
else:
    _Base = object

logger = logging.getLogger(__name__)

#: Seconds between two looks for stranded partitions (a stranding is acted on when seen twice).
STRANDED_CHECK_S = 2.0
#: Seconds a partition's committed offset may stand behind records waiting while every agent is
#: idle before the partition is fetched again from it (the last-resort liveness check). Looked
#: at every STRANDED_CHECK_S: each look asks the brokers for the partitions' ends and starts,
#: which took 1.7-2.4 s on a loaded 2-core machine (a 1 s look, with 3 s here, overlapped
#: itself 110 times in a 1,000-study chaos run, 2026-12-06).
STALL_S = 5.0
#: Seconds after which a partition standing still for another reason says why (and again)
STALL_REPORT_S = 60.0


class Watchdogs(_Base):
    """The timers' looks and what they share; mixed into the consumer (state set in its on_init)."""

    _handing_out: bool
    _sought_from: dict[TP, int]
    _suspects: dict[TP, tuple[int, int]]
    _holes: dict[TP, int]
    _refill: dict[TP, int]
    _refilled: dict[TP, int]
    _lost: dict[TP, int]
    _unfetched: dict[TP, int]
    _stalls: dict[TP, tuple[int, float]]
    _stall_reported: dict[TP, float]
    _to_seek: dict[TP, int]
    _to_fetch: dict[TP, tuple[int, int]]

    if TYPE_CHECKING:

        def _committed(self, tp: TP) -> int | None: ...

        def _sought(self, tp: TP, offset: int) -> None: ...

    def _assigned(self) -> set[TP]:
        try:
            return set(self.assignment())
        except Exception:  # noqa: BLE001  # no consumer yet, or stopping: nothing assigned
            return set()

    @Service.timer(STRANDED_CHECK_S)
    async def _find_stranded(self) -> None:
        if self._handing_out or not self.flow_active or self.app.rebalancing:
            return
        acked = self.app.topics.acks_enabled_for
        tps = [tp for tp in self.assignment() if acked(tp.topic)]
        if not tps:
            return
        positions = await self._on_client("stranded-records check", offsets.positions, tps)
        if positions is None:
            return
        # nothing handed out since the last seek and nothing committed: the group starts at the
        # log start (``earliest``), and whatever lies between it and the position never reached
        # an agent (test_alert_log, 2026-12-06: positions at the ends, 120 s without a record)
        unread = [
            tp
            for tp in positions
            if self._read_offset.get(tp) is None and self._committed(tp) is None
        ]
        starts: dict[TP, int] = {}
        if unread and self.app.conf.consumer_auto_offset_reset == "earliest":
            found = await self._on_client("stranded-records check", offsets.log_starts, unread)
            if found is None:
                return
            starts = found
        if self._handing_out or not self.flow_active or self.app.rebalancing:
            return
        idle = self._idle()
        suspects: dict[TP, tuple[int, int]] = {}
        for tp, position in positions.items():
            read = self._read_offset.get(tp)
            committed = self._committed(tp)
            if read is None:
                # nothing handed out since the last seek, which went to the committed offset
                # (or, none committed, to the log start)
                start = committed if committed is not None else starts.get(tp)
                if start is not None and start < position and self._sought_from.get(tp) != position:
                    suspects[tp] = (start, position)
                continue
            # nothing in flight: every record handed out was acknowledged and committed (each
            # second), so the records from the committed offset on never reached an agent
            first = committed if idle and committed is not None else max(read + 1, committed or 0)
            if first < position and self._sought_from.get(tp) != position:
                suspects[tp] = (first, position)
        seen_twice = {tp: v[0] for tp, v in suspects.items() if self._suspects.get(tp) == v}
        self._suspects = suspects
        for tp in seen_twice:
            self._suspects.pop(tp, None)
        self._to_seek.update(seen_twice)  # sought at the end of the next batch

    @Service.timer(STRANDED_CHECK_S)
    async def _find_unfetched(self) -> None:
        """Stream partitions Faust stopped fetching with records waiting: fetched again.

        Faust fetches only its "active" partitions: all assigned ones, less those paused for a
        table recovery and those whose agent queue is under pressure (back when the queue
        drains). The 1,000-study chaos run stalled so (2026-12-06): after a takeover and a seek
        back, ``ct.quantification-1`` stayed out of that set with 17 records waiting, the worker
        idle, its fetch loop live, for 5 minutes, and nothing logged (the position did not move,
        so the stranded-records watchdog saw nothing either). Outside a rebalance or a recovery,
        a partition seen so twice in a row (not under queue pressure) is logged with Faust's
        bookkeeping and resumed.
        """
        if not self._may_look():
            self._unfetched = {}
            return
        candidates = offsets.unfetched_partitions(
            self._assigned(),
            self._get_active_partitions(),
            self._buffered_partitions,
            queues_busy=not self._queues_empty(),
            acked=self.app.topics.acks_enabled_for,
        )
        if not candidates:
            self._unfetched = {}
            return
        waiting = await self._on_client("unfetched-partitions check", offsets.waiting, candidates)
        if waiting is None:
            return
        if not self._may_look():
            self._unfetched = {}
            return
        # the same position twice: nothing fetched in between (the end may move on)
        stuck = {tp: span for tp, span in waiting.items() if self._unfetched.get(tp) == span[0]}
        self._unfetched = {tp: span[0] for tp, span in waiting.items() if tp not in stuck}
        for tp, (position, end) in stuck.items():
            CONSUMER_RESUMED.inc()
            logger.warning(
                "records %d-%d of %s-%d wait and Faust was not fetching the partition "
                "(paused: %s, buffered: %s): fetching it again",
                position, end - 1, tp.topic, tp.partition,
                tp in self._paused_partitions, tp in self._buffered_partitions,
            )  # fmt: skip
            self._buffered_partitions.discard(tp)
        if stuck:
            self.resume_partitions(set(stuck))

    @Service.timer(STRANDED_CHECK_S)
    async def _find_stalled(self) -> None:
        """The last resort: a partition whose committed offset stands while records wait.

        The repairs above each answer one way Faust was seen to leave records behind. The
        1,000-study chaos runs showed stalls that none of them caught (2026-12-06): a partition
        never committed, sought back once from its end to 0 and then silent for 5 minutes (the
        stranded-records watchdog does not seek twice from one position), one left out of
        Faust's fetch set (caught since by :meth:`_find_unfetched`), and one whose record 0 was
        scored and nothing after it. All look the same from outside: records past the committed
        offset, the committed offset standing still, nothing of the partition in flight. Such a
        partition, seen so for :data:`STALL_S` while no agent queue holds records, has its
        bookkeeping reset and is fetched again from its committed offset (at-least-once: records
        may be processed twice, none lost). One standing for a minute for another reason says
        why every minute (what kept this check from acting).
        """
        if self._handing_out:
            return  # a batch is being handed out: look at the next tick
        acked = self.app.topics.acks_enabled_for
        tps = [tp for tp in self._assigned() if acked(tp.topic)]
        if not tps:
            self._stalls = {}
            return
        ends = await self._on_client("stalled-partitions check", offsets.end_offsets, tps)
        if ends is None:
            return
        unknown = [tp for tp in ends if self._committed(tp) is None]
        starts = await self._on_client("stalled-partitions check", offsets.log_starts, unknown)
        if starts is None:
            return
        now = time.monotonic()
        behind: dict[TP, tuple[int, float]] = {}
        for tp, end in ends.items():
            committed = self._committed(tp)
            committed = starts.get(tp) if committed is None else committed
            if committed is None or committed >= end:
                continue
            seen = self._stalls.get(tp)
            behind[tp] = seen if seen is not None and seen[0] == committed else (committed, now)
        self._stalls = behind
        blockers = self._stall_blockers(list(behind))
        stalled = offsets.stalled_partitions(behind, now, STALL_S)
        act = [tp for tp in stalled if not blockers[tp] and not self._handing_out]
        # fetched again at the end of the next batch (getmany runs every second, records or not)
        self._to_fetch.update({tp: (behind[tp][0], ends[tp]) for tp in act})
        for tp in offsets.stalled_partitions(behind, now, STALL_REPORT_S):
            last = self._stall_reported.get(tp, 0.0)
            if blockers[tp] and now - last >= STALL_REPORT_S:
                self._stall_reported[tp] = now
                logger.warning(
                    "records %d-%d of %s-%d have waited %.0fs with nothing committed; not "
                    "fetched again because: %s",
                    behind[tp][0], ends[tp] - 1, tp.topic, tp.partition, now - behind[tp][1],
                    ", ".join(blockers[tp]),
                )  # fmt: skip

    def _stall_blockers(self, tps: Sequence[TP]) -> dict[TP, list[str]]:
        """Why each partition standing still is not fetched again now (empty: nothing stops it)."""
        now = time.monotonic()
        states = [
            reason
            for reason, holds in (
                ("flow stopped", not self.flow_active),
                ("rebalancing", self.app.rebalancing),
                ("tables recovering", self.app.in_recovery),
            )
            if holds
        ]
        queued = [] if self._queues_empty() else ["agent queues hold records"]
        in_flight: dict[TP, list[tuple[int, int | None]]] = {}
        for m in list(self._unacked_messages):
            in_flight.setdefault(m.tp, []).append((m.offset, getattr(m, "generation_id", None)))
        blockers: dict[TP, list[str]] = {}
        for tp in tps:
            held = sorted(in_flight.get(tp, ()))
            of_it = [
                f"{len(held)} record(s) of it in flight (offset, generation: {held[:3]}; "
                f"generation now {self.app.consumer_generation_id})"
            ] if held else []  # fmt: skip
            key = (tp.topic, tp.partition)
            handling, last = offsets.HANDLING[key], offsets.LAST_HANDLED.get(key)
            beside: list[str] = []
            if handling:
                beside = [f"an agent handles {handling} record(s) of it"]
            elif last is not None and now - last < STALL_S:
                beside = [f"an agent finished a record of it {now - last:.1f}s ago"]
            blockers[tp] = states + of_it + beside + queued
        return blockers

    async def _fetch_again(self, found: Mapping[TP, tuple[int, int]]) -> None:
        """Reset our and Faust's bookkeeping of stalled partitions and fetch each again.

        ``found``: each partition's (committed offset, end) when the stall was seen.
        """
        targets = {tp: committed for tp, (committed, _) in found.items()}
        check = "fetching again a stalled partition"
        before = await self._on_client(check, offsets.seek_to, targets, level=logging.WARNING)
        if before is None:
            return
        active = self._get_active_partitions()
        for tp, position in before.items():
            target = targets[tp]
            CONSUMER_STALLS.inc()
            logger.warning(
                "records %d-%d of %s-%d waited, none in flight, every agent queue empty, "
                "nothing committed for %.0fs: fetching them again (Faust: active %s, paused %s, "
                "buffered %s, read offset %s; position %d; sent back from %s)",
                target, found[tp][1] - 1, tp.topic, tp.partition, STALL_S, tp in active,
                tp in self._paused_partitions, tp in self._buffered_partitions,
                self._read_offset.get(tp), position, self._sought_from.get(tp),
            )  # fmt: skip
            # as Faust's own seek does: the next record handed out is the target
            self._read_offset[tp] = target if target > 0 else None
            self._sought(tp, target)
            for state in (self._sought_from, self._suspects, self._holes, self._refill,
                          self._refilled, self._lost, self._unfetched, self._stalls,
                          self._to_seek):  # fmt: skip
                state.pop(tp, None)
            self._buffered_partitions.discard(tp)
        if before:
            self.resume_partitions(set(before))

    async def _on_client(
        self, check: str, func: Any, *args: Any, level: int = logging.DEBUG
    ) -> Any:
        """``func(consumer, *args)`` on the Kafka client's thread (a look, or a seek).

        None when it failed (a rebalance began: it seeks anyway), logged at ``level`` as
        ``check`` not done.
        """
        thread = self._thread
        consumer = thread._ensure_consumer()  # type: ignore[attr-defined]
        try:
            return await thread.call_thread(func, consumer, *args)
        except Exception as e:  # noqa: BLE001  # a rebalance began: it seeks anyway
            logger.log(level, "%s not done: %s", check, e)
            return None

    def _may_look(self) -> bool:
        """Flow on, no rebalance, no table recovery: the partitions should all be fetched."""
        return bool(self.flow_active) and not self.app.rebalancing and not self.app.in_recovery

    def _queues_empty(self) -> bool:
        """Every agent's incoming queue is empty (no partition is held back by pressure)."""
        for agent in self.app.agents.values():
            for actor in getattr(agent, "_actors", ()):
                queue = getattr(
                    getattr(getattr(actor, "stream", None), "channel", None), "queue", None
                )
                if queue is not None and queue.qsize():
                    return False
        return True

    def _idle(self) -> bool:
        """No record in flight: none unacknowledged, every agent's queue empty."""
        return not self._unacked_messages and self._queues_empty()
