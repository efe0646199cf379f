"""What the crash, replay and chaos tests read back: stored risks, topic values, processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from sqlalchemy import select, text

from dashboards import store
from streams import topics as t
from streams.demo import worker_env
from streams.records import Quantification, StageTimings
from streams.settings import Settings
from streams.topics import topic_layout
from triage.fhir.features import IMAGING_FEATURES

#: The chaos suite's workers' session timeout (``CTRIAGE_CHAOS_SESSION_TIMEOUT_S``, default 3 s):
#: its cluster is told to accept it, as a hospital that owns its brokers can (Kafka's floor: 6 s).
CHAOS_SESSION_TIMEOUT_S = float(os.environ.get("CTRIAGE_CHAOS_SESSION_TIMEOUT_S", "3"))


def stored_revisions(store_url: str, study_uids: set[str]) -> dict[str, int]:
    """Stored risk rows of ``study_uids``: study -> revision."""
    engine = store.make_engine(store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(store.risks.c.study_uid, store.risks.c.revision)).all()
    finally:
        engine.dispose()
    return {uid: revision or 0 for uid, revision in rows if uid in study_uids}


def risk_rows_per_study(store_url: str, study_uids: set[str]) -> dict[str, int]:
    """How many risk rows each of ``study_uids`` has in the store (absent: not listed)."""
    engine = store.make_engine(store_url)
    try:
        with engine.connect() as conn:
            uids = conn.execute(select(store.risks.c.study_uid)).scalars().all()
    finally:
        engine.dispose()
    counts: dict[str, int] = {}
    for uid in uids:
        if uid in study_uids:
            counts[uid] = counts.get(uid, 0) + 1
    return counts


def database_activity(store_url: str) -> str:
    """What every session of the store's database is doing: state, wait, blockers, query.

    A stalled test prints it: a worker blocked on a row lock another session holds shows here
    as ``Lock`` waits with the blocking pids (PostgreSQL only; other stores say so).
    """
    if not store_url.startswith("postgresql"):
        return "(not PostgreSQL: no session view)"
    engine = store.make_engine(store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT pid, state, wait_event_type, wait_event, pg_blocking_pids(pid),"
                    " now() - xact_start, left(query, 120) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).all()
    finally:
        engine.dispose()
    return (
        "\n".join(
            f"pid {pid} {state} wait {kind}/{event} blocked by {blockers} in transaction {age}: "
            f"{query!r}"
            for pid, state, kind, event, blockers, age, query in rows
        )
        or "(no other session)"
    )


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll ``condition`` every 0.25 s; seconds it took, or ``AssertionError`` naming ``what``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if condition():
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"{what} not within {timeout_s:.0f}s")


def topic_values(bootstrap_servers: str, topic: str) -> list[bytes]:
    """Every committed value on ``topic`` from the beginning (stops after 3 s without a record).

    ``read_committed``: alerts are written in transactions, and an aborted one was never sent.
    """
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    try:
        return [message.value for message in consumer]
    finally:
        consumer.close()


def descendants(pid: int) -> list[int]:
    """Pids of every process below ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found.extend(frontier)
    return found


def wait_settled(log_paths: list[Path], timeout_s: float = 180) -> None:
    """Wait until no worker is between a new assignment and the end of its table recovery.

    A worker SIGKILLed while the group is still rebalancing left the others not consuming for
    minutes in one run (docs/fault-tolerance.md, "Not done yet"); crash tests kill a worker of
    a settled group, as the issue's "after >= 20 % progress" means.
    """

    def settled() -> bool:
        for path in log_paths:
            text = path.read_text(errors="replace")
            if text.rfind("Worker ready") < text.rfind("Setting newly assigned partitions"):
                return False
        return True

    time.sleep(3)  # a rebalance a join has caused may not have reached the logs yet
    wait_for(settled, timeout_s, "the group settled")


def start_group_at_end(bootstrap_servers: str, group_id: str) -> None:
    """Commit ``group_id``'s offsets at the end of every ctriage topic the broker has.

    The session's broker is shared and a new group reads from the beginning: a crash test's
    workers would first work through every earlier test's studies (quantified with a Triton
    they may not reach, minutes of retries). Started at the end, they see only their own.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=group_id, enable_auto_commit=False
    )
    try:
        existing = consumer.topics()
        tps = [
            TopicPartition(name, partition)
            for name in topic_layout(1)
            if name in existing
            for partition in consumer.partitions_for_topic(name) or ()
        ]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        consumer.commit({tp: OffsetAndMetadata(end, "", -1) for tp, end in ends.items()})
    finally:
        consumer.close()


def autopsy(process_pid: int | None, log_path: Path, name: str) -> str:
    """A stalled worker's stacks and log tail, kept past pytest's temp rotation; the tail text.

    Sends SIGUSR1 (Faust lists the event loop's tasks) and SIGQUIT (every thread's stack,
    streams.worker), waits (up to 60 s) for them to reach the log, copies the log to
    ``$TMPDIR/ctriage-autopsy/<name>.log`` and returns its last lines (breach lines left out).
    """
    if process_pid is not None:
        start = log_path.stat().st_size if log_path.exists() else 0
        for sig in (signal.SIGUSR1, signal.SIGQUIT):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process_pid, sig)

        def dumped() -> bool:
            with log_path.open("rb") as log:
                log.seek(start)
                new = log.read()
            return b"(most recent call first)" in new and b"Stack for <Task" in new

        with contextlib.suppress(AssertionError):  # a blocked event loop lists no task
            # 60 s: in one clean-clone run (2026-12-07) the task list was not in the log after
            # 30 s, the thread dump was (the loop inside asyncio.all_tasks at that moment)
            wait_for(dumped, 60, "the worker's stack dumps")
    kept = Path(tempfile.gettempdir()) / "ctriage-autopsy" / f"{name}.log"
    kept.parent.mkdir(parents=True, exist_ok=True)
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    kept.write_text(text)
    lines = [line for line in text.splitlines() if "breach alert" not in line]
    return f"worker log kept in {kept}; its tail:\n" + "\n".join(lines[-60:])


def where_records_stand(
    bootstrap_servers: str,
    group_id: str,
    topic: str,
    missing: set[str],
    id_of: Callable[[bytes], str] | None = None,
) -> str:
    """Where the ``missing`` records lie on ``topic`` against ``group_id``'s committed offsets.

    What a crash test prints when records are missing downstream: each partition's committed
    offset and end, and the (partition, offset) of every missing record (``id_of`` reads a
    record's id; by default a quantification's study): below the committed offset means the
    group committed past it unprocessed; at or above it, the partition was not consumed.
    """
    read_id = id_of or (lambda value: Quantification.model_validate_json(value).study_uid)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=group_id, enable_auto_commit=False
    )
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = consumer.end_offsets(tps)
        committed = {tp.partition: consumer.committed(tp) for tp in tps}
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        found: dict[str, list[tuple[int, int]]] = {}
        while True:
            batch = consumer.poll(timeout_ms=2000)
            if not batch:
                break
            for messages in batch.values():
                for m in messages:
                    try:  # other tests' poison records share the topic
                        key = read_id(m.value)
                    except ValueError:
                        continue
                    if key in missing:
                        found.setdefault(key, []).append((m.partition, m.offset))
    finally:
        consumer.close()
    lines = [
        f"{topic}[{tp.partition}]: committed {committed[tp.partition]}, end {ends[tp]}"
        for tp in tps
    ]
    lines += [f"missing {key} at {found.get(key, 'no offset')}" for key in sorted(missing)]
    return "\n".join(lines)


def quantification(
    study_uid: str, pseudonym: str, hospital: str, ct_time: str, burden: float = 10.0
) -> Quantification:
    """A ``ct.quantification`` record with every imaging feature at ``burden`` (no Triton)."""
    return Quantification(
        study_uid=study_uid,
        patient_pseudonym=pseudonym,
        biomarkers=dict.fromkeys(IMAGING_FEATURES, burden),
        lesion_model="test",
        lesion_model_version="1",
        ct_time=ct_time,
        published_at=time.time(),
        hospital=hospital,
        timings=StageTimings(),
    )


def publish_quantifications(bootstrap_servers: str, records: list[Quantification]) -> None:
    """Publish ``records`` on ``ct.quantification`` keyed by patient (acks=all, flushed)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    for record in records:
        key = record.patient_pseudonym.encode()
        producer.send(t.CT_QUANTIFICATION.name, key=key, value=record.to_bytes())
    producer.flush()
    producer.close()


def worker_settings(settings: Settings, index: int) -> Settings:
    """Settings of worker ``index`` of a group: its own ports (from the index) and run dir."""
    worker = settings.worker.model_copy(update={"index": index})
    return settings.model_copy(update={"worker": worker, "run_dir": settings.run_dir / str(index)})


def ctriage(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``ctriage`` command as a user runs it, with exactly these settings."""
    return subprocess.run(
        [sys.executable, "-c", "from streams.cli import main; main()", *args],
        env={**worker_env(settings), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
