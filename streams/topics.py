"""Every ctriage topic, declared once: name, value type, partitions, key, retention, dead letters.

Each topic names the record class its values are (``value_type``): the worker's Faust topics
decode every message into it before an agent sees it (:mod:`streams.app`), so agents never parse
bytes by hand. A dead-letter twin carries :class:`~streams.records.DeadLetter` records whose
``payload`` is the failed message's bytes as received, never a re-encoding of what was decoded.
Topics keyed by the pseudonymous patient id are co-partitioned (same partition count), so the
worker that owns a patient's clinical context also owns that patient's CT results. Topics are
created with the admin client before a worker starts and checked at start-up: an auto-created
topic with the wrong partition count would silently break the join.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import (
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
)

from streams.kafka_security import PLAINTEXT, KafkaSecurity
from streams.records import (
    Alert,
    CapacityEvent,
    CtStudy,
    DeadLetter,
    FhirResourceEvent,
    Quantification,
    Record,
    RiskAssessment,
    ThresholdAudit,
    TriageConfig,
    UnitForecastRecord,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    """One topic's declaration."""

    name: str
    #: the record class of its values; ``bytes`` for a payload that is no record of ours
    value_type: type[Record] | type[bytes]
    key: str
    copartitioned: bool
    compacted: bool = False
    has_dlq: bool = False
    retention_ms: int | None = None  # None: the broker's default; -1: keep forever

    @property
    def dlq(self) -> str:
        """Name of the dead-letter twin."""
        return f"{self.name}.dlq"


PATIENT = "patient_pseudonym"

CT_STUDIES = TopicSpec("ct.studies", CtStudy, key=PATIENT, copartitioned=True, has_dlq=True)
FHIR_RESOURCES = TopicSpec(
    "fhir.resources", FhirResourceEvent, key=PATIENT, copartitioned=True, has_dlq=True
)
CT_QUANTIFICATION = TopicSpec(
    "ct.quantification", Quantification, key=PATIENT, copartitioned=True, has_dlq=True
)
TRIAGE_RISK = TopicSpec(
    "triage.risk", RiskAssessment, key=PATIENT, copartitioned=True, has_dlq=True
)
TRIAGE_ALERTS = TopicSpec("triage.alerts", Alert, key=PATIENT, copartitioned=True)
TRIAGE_CONFIG = TopicSpec(
    "triage.config", TriageConfig, key="hospital", copartitioned=False, compacted=True,
    has_dlq=True,
)  # fmt: skip
#: Alerts as FHIR R4 RiskAssessment resources (JSON), ready to POST to an EHR (key: pseudonym).
TRIAGE_ALERTS_FHIR = TopicSpec("triage.alerts.fhir", bytes, key=PATIENT, copartitioned=True)
#: Every change of an alert policy (who, when, old -> new, why; FHIR AuditEvent inside).
TRIAGE_AUDIT = TopicSpec(
    "triage.audit", ThresholdAudit, key="hospital", copartitioned=False, retention_ms=-1
)
CAPACITY_EVENTS = TopicSpec(
    "capacity.events", CapacityEvent, key="hospital", copartitioned=False, has_dlq=True
)
CAPACITY_FORECASTS = TopicSpec(
    "capacity.forecasts", UnitForecastRecord, key="hospital", copartitioned=False
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    CT_STUDIES,
    FHIR_RESOURCES,
    CT_QUANTIFICATION,
    TRIAGE_RISK,
    TRIAGE_ALERTS,
    TRIAGE_CONFIG,
    TRIAGE_ALERTS_FHIR,
    TRIAGE_AUDIT,
    CAPACITY_EVENTS,
    CAPACITY_FORECASTS,
)


class TopicLayoutError(RuntimeError):
    """The broker's topics do not match the declared layout (the join would be wrong)."""


class SessionTimeoutRefused(RuntimeError):
    """The worker's session timeout lies outside what the brokers accept.

    It would never join its consumer group: the broker answers ``InvalidSessionTimeoutError``
    and the worker waits.
    """


#: Broker settings bounding a consumer's session timeout (Kafka's defaults: 6 s and 30 min).
SESSION_TIMEOUT_BOUNDS = ("group.min.session.timeout.ms", "group.max.session.timeout.ms")


def expected_partitions(spec: TopicSpec, patient_partitions: int) -> int:
    """Partition count a topic must have: patient-keyed topics share one count, others have one."""
    return patient_partitions if spec.copartitioned else 1


def value_types() -> dict[str, type[Record] | type[bytes]]:
    """Every topic name (dead-letter twins included) -> the type of its values."""
    types: dict[str, type[Record] | type[bytes]] = {}
    for spec in ALL_TOPICS:
        types[spec.name] = spec.value_type
        if spec.has_dlq:
            types[spec.dlq] = DeadLetter
    return types


def topic_layout(patient_partitions: int) -> dict[str, tuple[int, bool]]:
    """Every topic name (dead-letter twins included) -> (partitions, compacted)."""
    layout: dict[str, tuple[int, bool]] = {}
    for spec in ALL_TOPICS:
        layout[spec.name] = (expected_partitions(spec, patient_partitions), spec.compacted)
        if spec.has_dlq:
            layout[spec.dlq] = (1, False)
    return layout


#: The worker's Faust tables -> partitions (``None``: the patient-keyed count). Their changelog
#: topics (``<app id>-<table>-changelog``, compacted) are created with the other topics: left to
#: Faust, a changelog created at start-up can be read before its metadata has propagated (0
#: partitions), which Faust reports as a co-partitioning mismatch on the first events.
TABLES: dict[str, int | None] = {
    "patient_to_context": None,
    "patient_to_pending": None,
    "alerted_studies": None,
    "patient_to_recent_studies": None,
    "patient_to_timeline": None,
    "hospital_to_census": 1,
}


def changelog_topic(app_id: str, table: str) -> str:
    """Faust's changelog topic of ``table`` in the app ``app_id``."""
    return f"{app_id}-{table}-changelog"


def changelog_layout(app_id: str, patient_partitions: int) -> dict[str, tuple[int, bool]]:
    """Changelog topic -> (partitions, compacted) of every table in :data:`TABLES`."""
    return {
        changelog_topic(app_id, table): (patient_partitions if n is None else n, True)
        for table, n in TABLES.items()
    }


def ensure_topics(
    bootstrap_servers: str,
    patient_partitions: int,
    timeout_s: float = 30,
    app_id: str | None = None,
    replication: int = 1,
    min_insync: int = 1,
    security: KafkaSecurity = PLAINTEXT,
    session_timeout_s: float | None = None,
) -> None:
    """Create missing topics (and ``app_id``'s table changelogs); verify partition counts.

    With ``session_timeout_s`` (a worker's), also check it against the brokers' bounds
    (:func:`check_session_timeout`).

    ``replication`` copies of each partition; ``min_insync``: how many must hold a record before
    an ``acks=all`` send succeeds (a 3-node cluster: 3 and 2, so one broker may be down). A
    principal may create only its topics (``streams.kafka_acls``): the others are left to the
    worker or the cluster admin, and checked only where it may describe them.
    """
    layout = topic_layout(patient_partitions)
    if app_id is not None:
        layout |= changelog_layout(app_id, patient_partitions)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="ctriage-topics",
        request_timeout_ms=int(timeout_s * 1000),
        **security.kafka_python(),
    )
    try:
        if session_timeout_s is not None:  # before anything is created
            check_session_timeout(admin, session_timeout_s)
        new = [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=replication,
                topic_configs={
                    **_topic_configs(name, compacted),
                    "min.insync.replicas": str(min_insync),
                },
            )
            for name, (partitions, compacted) in layout.items()
        ]
        for topic in new:
            try:
                admin.create_topics([topic])
            except TopicAlreadyExistsError:
                logger.debug("topic %s already exists", topic.name)
            except TopicAuthorizationFailedError:
                logger.debug("topic %s: this principal may not create it", topic.name)
        check_topic_layout(admin, layout, timeout_s)
    finally:
        admin.close()


def check_session_timeout(admin: KafkaAdminClient, session_timeout_s: float) -> None:
    """Raise :class:`SessionTimeoutRefused` when a broker would refuse ``session_timeout_s``.

    Read from one broker's configuration (the bounds are cluster-wide in practice). A principal
    without DescribeConfigs on the cluster is not checked (logged): the worker's log then
    shows the broker's refusal if there is one.
    """
    timeout_ms = session_timeout_s * 1000
    try:
        broker = str(admin.describe_cluster()["brokers"][0]["broker_id"])
        resource = ConfigResource(
            ConfigResourceType.BROKER, broker, configs=dict.fromkeys(SESSION_TIMEOUT_BOUNDS)
        )
        described = admin.describe_configs([resource], config_filter="all")["broker"][broker]
        low, high = (float(described[key]["value"]) for key in SESSION_TIMEOUT_BOUNDS)
    except (KafkaError, KeyError, IndexError, TypeError, ValueError) as e:
        logger.info("session timeout not checked against the brokers: %s", e)
        return
    if not low <= timeout_ms <= high:
        raise SessionTimeoutRefused(
            f"session timeout {session_timeout_s:g} s is outside the brokers' "
            f"{SESSION_TIMEOUT_BOUNDS[0]}..{SESSION_TIMEOUT_BOUNDS[1]} = {low / 1000:g}.."
            f"{high / 1000:g} s (CTRIAGE_WORKER__SESSION_TIMEOUT_S): the worker would never join"
        )


def _topic_configs(name: str, compacted: bool) -> dict[str, str]:
    configs = {"cleanup.policy": "compact"} if compacted else {}
    spec = next((s for s in ALL_TOPICS if s.name == name), None)
    if spec is not None and spec.retention_ms is not None:
        configs["retention.ms"] = str(spec.retention_ms)
    return configs


def check_topic_layout(
    admin: KafkaAdminClient, layout: dict[str, tuple[int, bool]], timeout_s: float = 30
) -> None:
    """Raise :class:`TopicLayoutError` when a topic has the wrong partition count.

    A topic created a moment ago may not be described yet (no leader): that is waited for,
    up to ``timeout_s``; a wrong partition count fails at once. Topics this principal may not
    describe are not its to check.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        described = admin.describe_topics(list(layout))
        hidden = {
            d["name"]
            for d in described
            if d.get("error_code") == TopicAuthorizationFailedError.errno
        }
        layout = {name: spec for name, spec in layout.items() if name not in hidden}
        actual = {d["name"]: len(d["partitions"]) for d in described if not d.get("error_code")}
        wrong = {
            name: (actual.get(name), partitions)
            for name, (partitions, _) in layout.items()
            if actual.get(name) != partitions
        }
        pending = any(has is None for has, _ in wrong.values())
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if wrong:
        detail = ", ".join(f"{n}: has {a}, needs {e}" for n, (a, e) in sorted(wrong.items()))
        raise TopicLayoutError(f"topics not co-partitioned as declared: {detail}")


async def read_from_start(
    consumer: AIOKafkaConsumer,
    names: Sequence[str],
    take: Callable[[ConsumerRecord[bytes, bytes]], Awaitable[None]],
) -> None:
    """Read every partition of ``names`` from the beginning to the end they have now.

    ``consumer`` is a started group-less aiokafka consumer; it is assigned every partition of
    the topics and keeps its positions afterwards, so the caller follows what comes next with
    ``getmany``. Each record is handed to ``take`` in partition order. Used for the compacted
    policy topics, which the admin API and every worker must know in full before they act.
    """
    await consumer.topics()  # metadata of every topic
    partitions = [
        TopicPartition(name, p)
        for name in names
        for p in sorted(consumer.partitions_for_topic(name) or {0})
    ]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    end = await consumer.end_offsets(partitions)
    while behind := [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
        for records in (await consumer.getmany(*behind, timeout_ms=500)).values():
            for record in records:
                await take(record)
