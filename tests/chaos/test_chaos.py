"""Chaos on the 3-node cluster with 3 workers: worker kills, broker kills, poison messages.

Each scenario replays ``CTRIAGE_CHAOS_STUDIES`` small studies (default 80; the issue's full size
is 1000) as ``ct.quantification`` records (no Triton, so the faults are the only thing measured),
then checks what the issue asks: every study has exactly one risk row in PostgreSQL, no alert id
twice on ``triage.alerts``, no stored revision older than the newest on ``triage.risk``, nothing
of a killed worker left running, every poison message dead-lettered with its reason, and the time
from each kill until studies on every partition are scored again. Figures are printed and
written to ``tests/bench/results/chaos-<scenario>.json``.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from kafka import KafkaProducer
from kafka.partitioner.default import murmur2
from stream_checks import (
    CHAOS_SESSION_TIMEOUT_S,
    autopsy,
    database_activity,
    descendants,
    risk_rows_per_study,
    stored_revisions,
    topic_values,
    wait_for,
    wait_settled,
    where_records_stand,
    worker_settings,
)

from deploy.kafka_cluster import KafkaCluster
from deploy.triton import TritonServer
from inference.client import THRESHOLD_MODEL
from streams import topics as t
from streams.demo import DemoError, WorkerProcess
from streams.dlq_replay import replay_dead_letters
from streams.records import Alert, DeadLetter, Quantification, RiskAssessment, StageTimings
from streams.settings import Settings
from streams.sources.replay import ReplayReport, replay
from triage.cohort import generate_cohort
from triage.fhir import Pseudonymiser
from triage.fhir.features import IMAGING_FEATURES

pytestmark = pytest.mark.chaos

STUDIES = int(os.environ.get("CTRIAGE_CHAOS_STUDIES", "80"))
TRITON_DOWN_S = float(os.environ.get("CTRIAGE_CHAOS_TRITON_DOWN_S", "120"))
CHAOS_TRITON_PORT = 21300  # grpc + 1, metrics + 2
RUN = uuid.uuid4().hex[:8]
RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"
HOSPITAL = f"chaos-{RUN}"
rng = random.Random(15)


@pytest.fixture(scope="module")
def settings(
    cluster: KafkaCluster, postgres_server, port_offset: int, tmp_path_factory
) -> Settings:
    run_dir = tmp_path_factory.mktemp("chaos")
    return Settings(
        run_dir=run_dir,
        kafka={"bootstrap_servers": cluster.bootstrap_servers, "partitions": 4, "nodes": 3},
        store={"url": postgres_server.create_database(f"chaos_{RUN}")},
        worker={
            "app_id": f"ctriage-chaos-{RUN}",
            "data_dir": run_dir / "worker",
            "metrics_port": 21250 + port_offset,  # worker N: + N
            "web_port": 21260 + port_offset,
            "hospital": HOSPITAL,
            # a dead worker is noticed after this long; heartbeats three times within it
            "session_timeout_s": CHAOS_SESSION_TIMEOUT_S,
            "heartbeat_interval_s": CHAOS_SESSION_TIMEOUT_S / 3,
        },
        # the Triton of the outage scenario (started and stopped by it); studies retried for
        # the default 60 s of an outage, then dead-lettered and replayed once it is back
        triton={"http_port": CHAOS_TRITON_PORT + port_offset, "model_name": THRESHOLD_MODEL},
    )


@pytest.fixture(scope="module")
def workers(settings: Settings) -> Iterator[list[WorkerProcess]]:
    """Three real workers of one group on the cluster."""
    started = [WorkerProcess(worker_settings(settings, i)) for i in range(3)]
    try:
        for process in started:
            process.start(timeout_s=240)
    except (DemoError, OSError) as e:
        for process in started:
            process.stop()
        pytest.fail(f"workers did not start ({e})")
    yield started
    for process in started:
        process.stop()


def _studies(scenario: str, n: int) -> list[Quantification]:
    root = f"2.25.{uuid.uuid4().int % 10**12}"
    return [
        Quantification(
            study_uid=f"{root}.{i}",
            patient_pseudonym=f"k1-{scenario}-{RUN}-{i}",
            biomarkers=dict.fromkeys(IMAGING_FEATURES, rng.uniform(0, 60)),
            lesion_model="test",
            lesion_model_version="1",
            ct_time=datetime.now(UTC).isoformat(),
            published_at=time.time(),
            hospital=HOSPITAL,
            timings=StageTimings(),
        )
        for i in range(n)
    ]


def _publish(servers: str, records: list[Quantification], raw: tuple[bytes, ...] = ()) -> None:
    producer = KafkaProducer(bootstrap_servers=servers, acks="all", retries=20)
    for record in records:
        key = record.patient_pseudonym.encode()
        producer.send(t.CT_QUANTIFICATION.name, key=key, value=record.to_bytes())
    for i, value in enumerate(raw):
        producer.send(t.CT_QUANTIFICATION.name, key=f"poison-{RUN}-{i}".encode(), value=value)
    producer.flush(timeout=120)
    producer.close()


def _partition(key: str, partitions: int) -> int:
    """The partition kafka-python's default partitioner gives ``key`` (murmur2, like Java's)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def _probes(scenario: str, partitions: int, per_partition: int = 3) -> list[Quantification]:
    """Probe studies, ``per_partition`` on every partition of ``ct.quantification``."""
    picked: dict[int, list[Quantification]] = {p: [] for p in range(partitions)}
    for probe in _studies(f"{scenario}-probe", 60 * partitions):
        bucket = picked[_partition(probe.patient_pseudonym, partitions)]
        if len(bucket) < per_partition:
            bucket.append(probe)
    assert all(len(b) == per_partition for b in picked.values()), "probe keys do not cover"
    return [probe for bucket in picked.values() for probe in bucket]


SCORED_LINE = re.compile(
    r"^\[(?P<at>[\d-]+ [\d:]+,\d+)\] \[\d+\] \[INFO\] scored study \S+ "
    r"\(ct\.quantification-(?P<partition>\d+)@\d+\)"
)


def _first_scored_after(workers: list[WorkerProcess], wall: float) -> dict[int, float]:
    """Per partition of ``ct.quantification``: the first study scored after ``wall`` (epoch s),
    read from the workers' "scored study" log lines (written once its outputs are confirmed)."""
    first: dict[int, float] = {}
    for worker in workers:
        for line in worker.log_path.read_text(errors="replace").splitlines():
            match = SCORED_LINE.match(line)
            if match is None:
                continue
            at = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            partition = int(match["partition"])
            if at > wall and at < first.get(partition, float("inf")):
                first[partition] = at
    return first


def _scored_again(
    settings: Settings, workers: list[WorkerProcess], scenario: str, wall: float, since: float
) -> dict[str, float]:
    """After a kill at ``since`` (monotonic; ``wall`` the same instant in epoch seconds):
    ``resumed_s``, until studies on every partition are scored again (the group serves every
    partition: what the <= 10 s / <= 30 s targets are about), and ``drained_s``, until probes
    published now on every partition are stored (behind the backlog the kill left)."""
    partitions = settings.kafka.partitions
    probes = _probes(scenario, partitions)
    _publish(settings.kafka.bootstrap_servers, probes)
    uids = {p.study_uid for p in probes}
    try:
        wait_for(lambda: len(stored_revisions(settings.store.url, uids)) == len(uids), 300,
                 "probes")  # fmt: skip
    except AssertionError as e:  # a stall: keep what every live worker and the store were doing
        raise AssertionError(f"{e}\n{_stall_report(settings, workers, scenario, uids)}") from e
    drained = time.monotonic() - since
    first = _first_scored_after(workers, wall)
    assert sorted(first) == list(range(partitions)), first  # the probes cover every partition
    return {"resumed_s": round(max(first.values()) - wall, 1), "drained_s": round(drained, 1)}


def _stall_report(
    settings: Settings, workers: list[WorkerProcess], scenario: str, uids: set[str]
) -> str:
    """Where the unscored probes lie, the store's sessions, and each live worker's stacks."""
    missing = uids - set(stored_revisions(settings.store.url, uids))
    parts = [
        f"{len(missing)} of {len(uids)} probes not stored",
        where_records_stand(
            settings.kafka.bootstrap_servers,
            settings.worker.app_id,
            t.CT_QUANTIFICATION.name,
            missing,
        ),
        "store sessions:\n" + database_activity(settings.store.url),
    ]
    for i, worker in enumerate(workers):
        pid = worker.process.pid if worker.process and worker.process.poll() is None else None
        parts.append(f"worker {i}: " + autopsy(pid, worker.log_path, f"chaos-{scenario}-{RUN}-{i}"))
    return "\n".join(parts)


def _checks(settings: Settings, uids: set[str]) -> dict[str, Any]:
    """Lost, duplicated and stale studies; duplicate alert ids."""
    servers = settings.kafka.bootstrap_servers
    rows = risk_rows_per_study(settings.store.url, uids)
    stored = stored_revisions(settings.store.url, uids)
    newest: dict[str, int] = {}
    for value in topic_values(servers, t.TRIAGE_RISK.name):
        risk = RiskAssessment.model_validate_json(value)
        if risk.study_uid in uids:
            newest[risk.study_uid] = max(newest.get(risk.study_uid, 0), risk.revision)
    alerts = [Alert.model_validate_json(v) for v in topic_values(servers, t.TRIAGE_ALERTS.name)]
    alert_ids = [a.alert_id for a in alerts if a.study_uid in uids]
    return {
        "studies": len(uids),
        "lost": len(uids - set(rows)),
        "duplicate_rows": sum(1 for n in rows.values() if n != 1),
        "stale_revisions": sum(1 for uid, rev in stored.items() if rev < newest.get(uid, 0)),
        "alerts": len(alert_ids),
        "duplicate_alert_ids": len(alert_ids) - len(set(alert_ids)),
    }


def _recoveries(measured: list[dict[str, float]]) -> dict[str, list[float]]:
    """``recovery_s`` (every partition scored again) and ``drained_s`` per kill."""
    return {
        "recovery_s": [m["resumed_s"] for m in measured],
        "drained_s": [m["drained_s"] for m in measured],
    }


def _record(scenario: str, figures: dict[str, Any]) -> None:
    figures = {"scenario": scenario, "cpu_count": psutil.cpu_count(),
               "load_avg_1m": os.getloadavg()[0], **figures}  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"chaos-{scenario}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nchaos {scenario}: {json.dumps(figures)}")


def _assert_clean(figures: dict[str, Any]) -> None:
    # duplicate alert ids: alerts are written ahead and settled (streams/agents/alert_log.py)
    for key in ("lost", "duplicate_rows", "stale_revisions", "duplicate_alert_ids"):
        assert figures[key] == 0, figures


def test_worker_sigkill_three_times(settings, workers):
    studies = _studies("worker-kill", STUDIES)
    uids = {s.study_uid for s in studies}
    chunks = [studies[i::4] for i in range(4)]
    recoveries, left = [], []
    for kill in range(3):
        wait_settled([w.log_path for w in workers])
        _publish(settings.kafka.bootstrap_servers, chunks[kill])
        done_before = len(stored_revisions(settings.store.url, uids))
        target = done_before + max(1, len(chunks[kill]) // 5)  # >= 20 % of the chunk scored
        wait_for(lambda t_=target: len(stored_revisions(settings.store.url, uids)) >= t_, 180,
                 "20 % progress")  # fmt: skip
        victim = rng.choice(workers)
        assert victim.process is not None
        children = descendants(victim.process.pid)
        victim.process.kill()
        killed_at, killed_wall = time.monotonic(), time.time()
        victim.process.wait()
        recoveries.append(_scored_again(settings, workers, f"wk{kill}", killed_wall, killed_at))
        left += [pid for pid in children if Path(f"/proc/{pid}").exists()]
        victim.start(timeout_s=240)
    _publish(settings.kafka.bootstrap_servers, chunks[3])
    wait_for(lambda: len(stored_revisions(settings.store.url, uids)) == len(uids), 300, "all")
    figures = {**_checks(settings, uids), **_recoveries(recoveries), "processes_left": len(left)}
    _record("worker-sigkill", figures)
    _assert_clean(figures)
    assert not left


POISON = {
    "not_json": b"\x00\xffnot json at all",
    "empty": b"",
    "wrong_schema": b'{"study_uid": 42, "hello": "world"}',
    "truncated": b'{"study_uid": "1.2.3", "patient_pseudonym": "k1-x", "biomark',
    "array": b"[1, 2, 3]",
}


def test_poison_messages_are_dead_lettered_and_good_ones_scored(settings, workers):
    studies = _studies("poison", STUDIES)
    uids = {s.study_uid for s in studies}
    per_kind = max(2, STUDIES // 50)  # 100 poison in a 1,000-study replay: 20 of each kind
    poison = [value for value in POISON.values() for _ in range(per_kind)]
    _publish(settings.kafka.bootstrap_servers, studies, tuple(poison))
    wait_for(lambda: len(stored_revisions(settings.store.url, uids)) == len(uids), 300, "all")

    def letters() -> list[DeadLetter]:
        values = topic_values(settings.kafka.bootstrap_servers, t.CT_QUANTIFICATION.dlq)
        found = [DeadLetter.model_validate_json(v) for v in values]
        return [d for d in found if (d.key or "").startswith(f"poison-{RUN}-")]

    wait_for(lambda: len(letters()) >= len(poison), 120, "every poison message dead-lettered")
    found = letters()
    reasons = sorted({d.reason_code for d in found})
    figures = {**_checks(settings, uids), "poison": len(poison), "dead_lettered": len(found),
               "reasons": reasons}  # fmt: skip
    _record("poison", figures)
    _assert_clean(figures)
    assert len(found) == len(poison)  # each once
    assert all(d.reason_code for d in found)


def test_broker_sigkill_three_times(settings, workers, cluster: KafkaCluster):
    studies = _studies("broker-kill", STUDIES)
    uids = {s.study_uid for s in studies}
    chunks = [studies[i::4] for i in range(4)]
    recoveries = []
    for kill, node in enumerate(rng.sample(cluster.nodes, 3)):  # a different node each time
        _publish(settings.kafka.bootstrap_servers, chunks[kill])
        assert node.pid is not None
        psutil.Process(node.pid).kill()
        killed_at, killed_wall = time.monotonic(), time.time()
        node.stop(timeout_s=10)  # reap it
        recoveries.append(_scored_again(settings, workers, f"bk{kill}", killed_wall, killed_at))
        node.start(timeout_s=120)
    _publish(settings.kafka.bootstrap_servers, chunks[3])
    wait_for(lambda: len(stored_revisions(settings.store.url, uids)) == len(uids), 300, "all")
    figures = {**_checks(settings, uids), **_recoveries(recoveries)}
    _record("broker-sigkill", figures)
    _assert_clean(figures)


def test_triton_down_then_back(settings, workers, tmp_path_factory, repo_root):
    """Scenario (c): Triton SIGKILLed after >= 20 % of a CT replay, started again later.

    Studies that reach a worker meanwhile are retried for ``triton.outage_retry_s`` (60 s), then
    dead-lettered as ``triton_unavailable``; once Triton is back, ``ctriage dlq replay``'s
    function sends them again. Every study must end with exactly one risk row.
    """
    n = max(12, STUDIES // 4)  # real DICOM series through the claim check: fewer than above
    cohort = tmp_path_factory.mktemp("chaos-triton-cohort")
    generate_cohort(cohort, n_patients=n, seed=23, matrix=64, slices=32, hospital=HOSPITAL)
    port = settings.triton.http_port
    triton = TritonServer(
        run_dir=tmp_path_factory.mktemp("chaos-triton"),
        model_repository=repo_root / "inference" / "model_repository",
        http_port=port, grpc_port=port + 1, metrics_port=port + 2,
    )  # fmt: skip
    servers, url = settings.kafka.bootstrap_servers, settings.store.url
    seen: list[str] = []
    reports: list[ReplayReport] = []
    pseudonymiser = Pseudonymiser(
        key=settings.pseudonym.key.get_secret_value().encode(),
        key_version=settings.pseudonym.key_version,
    )
    triton.start(timeout_s=240)
    try:
        thread = threading.Thread(
            target=lambda: reports.append(
                replay(
                    cohort,
                    servers,
                    pseudonymiser,
                    48 * 3600 / 90,  # over about 90 s
                    settings.run_dir / "quarantine",
                    lambda s: seen.append(s.study_uid),
                )
            ),  # fmt: skip
            daemon=True,
        )
        thread.start()
        wait_for(lambda: len(stored_revisions(url, set(seen))) >= n // 5, 300, "20 % scored")
        assert triton.pid is not None
        psutil.Process(triton.pid).kill()
        down_at = time.monotonic()
        triton.stop(timeout_s=10)  # reap it
        time.sleep(max(0.0, TRITON_DOWN_S - (time.monotonic() - down_at)))
        triton.start(timeout_s=240)
        back_at = time.monotonic()
        thread.join(timeout=300)
        uids = set(reports[0].study_uids)
        stored_at_return = len(stored_revisions(url, uids))

        def dead_lettered() -> set[str]:
            letters = [DeadLetter.model_validate_json(v)
                       for v in topic_values(servers, t.CT_STUDIES.dlq)]  # fmt: skip
            return {json.loads(d.payload).get("study_uid") for d in letters
                    if d.reason_code == "triton_unavailable"} & uids  # fmt: skip

        wait_for(lambda: set(stored_revisions(url, uids)) | dead_lettered() == uids, 600,
                 "every study scored or dead-lettered")  # fmt: skip
        flowing_after_s = round(time.monotonic() - back_at, 1)
        letters = dead_lettered() - set(stored_revisions(url, uids))
        replayed = replay_dead_letters(servers, t.CT_STUDIES.dlq, reason="triton_unavailable")
        wait_for(lambda: set(stored_revisions(url, uids)) == uids, 300, "all scored")
    finally:
        triton.stop()
    figures = {
        **_checks(settings, uids),
        "triton_down_s": round(back_at - down_at, 1),
        "scored_when_triton_returned": stored_at_return,
        "dead_lettered_triton_unavailable": len(letters),
        "replayed": replayed.replayed,
        "every_study_scored_or_dead_lettered_s_after_return": flowing_after_s,
    }
    _record("triton-down", figures)
    _assert_clean(figures)
