"""A secured local Kafka (SASL_SSL, SCRAM-SHA-512, ACLs): each service as its own principal.

The broker is started the way ``ctriage services up`` starts it with
``CTRIAGE_KAFKA__SECURITY_PROTOCOL=SASL_SSL`` (:func:`streams.services.services_from_settings`):
certificates and passwords made into its run dir, the principals and ACLs of
:mod:`streams.kafka_acls` provisioned by the launcher. Then the pipeline runs with each service
as itself (FHIR ingress, study ingest, worker, admin API), and each is refused what it does not
own. Ports 28692/28693 (+ ``CTRIAGE_TEST_PORT_OFFSET``), worker 28694/28696: below 32768, where
Linux picks ephemeral ports (the broker's own connection to its controller once took 33692).
"""

from __future__ import annotations

import asyncio
import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (
    GroupAuthorizationFailedError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
)
from pydantic import SecretStr

from deploy.exceptions import ServiceError
from deploy.kafka import KafkaBroker
from inference.client import THRESHOLD_MODEL
from streams import kafka_acls
from streams import topics as t
from streams.admin.serve import policy_log
from streams.demo import DemoError, WorkerProcess
from streams.kafka_health import broker_answers
from streams.kafka_security import PLAINTEXT, KafkaSecurity
from streams.records import RiskAssessment
from streams.services import admin_security, services_from_settings
from streams.settings import Settings
from streams.sources.fhir_ingest import KafkaFhirSink
from streams.sources.replay import ct_event, fhir_events, timeline
from triage.alerts import ThresholdChange
from triage.cohort import generate_cohort
from triage.fhir import Pseudonymiser

pytestmark = pytest.mark.integration

PATIENTS = 2
APP_ID = "ctriage-sec"


@pytest.fixture(scope="module")
def settings(triton_server, port_offset: int, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of the secured cluster as the launcher sees them (no principal of its own)."""
    run_dir = tmp_path_factory.mktemp("secured")
    return Settings(
        run_dir=run_dir,
        kafka={
            "bootstrap_servers": f"127.0.0.1:{28692 + port_offset}",
            "controller_port": 28693 + port_offset,
            "partitions": 2,
            "heap_mb": 512,
            "security_protocol": "SASL_SSL",
        },
        triton={
            "http_port": int(triton_server.http_url.rsplit(":", 1)[1]),
            "model_name": THRESHOLD_MODEL,
        },
        store={"url": f"sqlite:///{run_dir / 'store.sqlite'}"},
        worker={
            "app_id": APP_ID,
            "data_dir": run_dir / "worker",
            "metrics_port": 28694 + port_offset,
            "web_port": 28696 + port_offset,
        },
    )


@pytest.fixture(scope="module")
def broker(settings: Settings) -> Iterator[KafkaBroker]:
    """The secured broker, started and provisioned as ``ctriage services up`` does it."""
    kafka = services_from_settings(settings).kafka
    assert isinstance(kafka, KafkaBroker) and kafka.security is not None
    started = time.monotonic()
    try:
        kafka.start(timeout_s=120)
    except ServiceError as e:
        pytest.fail(f"the secured Kafka broker did not start: {e}", pytrace=False)
    print(f"secured broker started and provisioned in {time.monotonic() - started:.1f} s")
    yield kafka
    kafka.stop()


def as_principal(settings: Settings, broker: KafkaBroker, user: str) -> Settings:
    """The settings one service runs with: its own username and password, the broker's CA."""
    assert broker.security is not None
    kafka = settings.kafka.model_copy(
        update={
            "sasl_username": user,
            "sasl_password": SecretStr(broker.security.password(user)),
            "ssl_ca_file": broker.security.ca_file,
        }
    )
    return settings.model_copy(update={"kafka": kafka})


def security_of(settings: Settings) -> KafkaSecurity:
    return KafkaSecurity.from_settings(settings.kafka)


@pytest.fixture(scope="module")
def worker(settings: Settings, broker: KafkaBroker) -> Iterator[WorkerProcess]:
    process = WorkerProcess(as_principal(settings, broker, kafka_acls.WORKER))
    try:
        process.start(timeout_s=180)
    except (DemoError, OSError) as e:
        process.stop()
        tail = process.log_path.read_text()[-4000:] if process.log_path.exists() else ""
        pytest.fail(f"worker did not start ({e}):\n{tail}")
    yield process
    process.stop()


def read_all(bootstrap: str, security: KafkaSecurity, topic: str, idle_s: float = 3) -> list[bytes]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=int(idle_s * 1000),
        **security.kafka_python(),
    )
    try:
        consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
        return [record.value for record in consumer]
    finally:
        consumer.close()


def test_the_pipeline_runs_with_each_service_as_its_own_principal(
    settings: Settings, broker: KafkaBroker, worker: WorkerProcess, tmp_path: Path
) -> None:
    cohort = tmp_path / "cohort"
    generate_cohort(cohort, n_patients=PATIENTS, seed=17, matrix=96, slices=48)
    items, hospital = timeline(cohort)
    pseudonymiser = Pseudonymiser(
        settings.pseudonym.key.get_secret_value().encode(), settings.pseudonym.key_version
    )
    servers = settings.kafka.bootstrap_servers
    fhir = KafkaFhirSink(
        servers, security=security_of(as_principal(settings, broker, kafka_acls.FHIR_ENDPOINT))
    )
    ingest = KafkaProducer(
        bootstrap_servers=servers,
        acks="all",
        **security_of(as_principal(settings, broker, kafka_acls.INGEST)).kafka_python(),
    )
    studies = []
    try:
        for item in items:
            if item.kind == "ct":
                study = ct_event(item, pseudonymiser, hospital)
                ingest.send(t.CT_STUDIES.name, study.to_bytes(), study.patient_pseudonym.encode())
                studies.append(study.study_uid)
                continue
            bundle = json.loads(item.path.read_text())
            for event in fhir_events(bundle, pseudonymiser, item.event_time, hospital):
                fhir.send_resource(event)
        ingest.flush(timeout=30)
    finally:
        ingest.close()
        fhir.close()
    assert len(studies) == PATIENTS

    # the admin API, as itself, changes the alert policy (reads and writes triage.config/audit)
    admin_api = as_principal(settings, broker, kafka_acls.ADMIN_API)

    async def change_threshold() -> None:
        log = policy_log(admin_api)
        await log.start()
        try:
            change = ThresholdChange(admin_api.worker.hospital, {"high": 0.35}, "test", "it")
            assert await log.change(change, role="threshold-admin", source="it") is not None
        finally:
            await log.stop()

    asyncio.run(change_threshold())

    # the worker, as itself, quantified (Triton) and scored every study; the admin reads them
    observer = admin_security(broker.security)
    deadline = time.monotonic() + 120
    scored: set[str] = set()
    while time.monotonic() < deadline and scored != set(studies):
        values = read_all(servers, observer, t.TRIAGE_RISK.name, idle_s=2)
        scored = {RiskAssessment.model_validate_json(v).study_uid for v in values}
    assert scored == set(studies), f"scored {scored}, want {studies}"
    assert read_all(servers, observer, t.TRIAGE_AUDIT.name), "the admin API's audit record"
    log = worker.log_path.read_text()

    # no password anywhere: not in the worker's log, the broker's logs, nor a settings repr
    assert broker.security is not None
    secrets = [broker.security.password(u) for u in kafka_acls.PRINCIPALS]
    worker_settings = as_principal(settings, broker, kafka_acls.WORKER)
    texts = [log, repr(worker_settings), str(worker_settings.kafka)]
    texts += [p.read_text(errors="replace") for p in broker.logs if p.exists()]
    for secret in secrets:
        assert all(secret not in text for text in texts)


@pytest.mark.parametrize(
    ("user", "topic"),
    [
        (kafka_acls.FHIR_ENDPOINT, t.TRIAGE_ALERTS.name),  # the example
        (kafka_acls.FHIR_ENDPOINT, t.FHIR_RESOURCES.name),  # it writes there, never reads
        (kafka_acls.INGEST, t.CT_STUDIES.name),
        (kafka_acls.ADMIN_API, t.TRIAGE_RISK.name),
        (kafka_acls.KEDA, t.TRIAGE_ALERTS.name),  # sees the topic (for the lag), not its records
    ],
)
def test_a_principal_may_not_read_what_it_does_not_own(
    settings: Settings, broker: KafkaBroker, user: str, topic: str
) -> None:
    servers = settings.kafka.bootstrap_servers
    admin = admin_security(broker.security)
    producer = KafkaProducer(bootstrap_servers=servers, **admin.kafka_python())
    producer.send(topic, b"not for " + user.encode(), partition=0).get(timeout=30)
    producer.close()
    security = security_of(as_principal(settings, broker, user))
    consumer = KafkaConsumer(
        bootstrap_servers=servers, group_id=None, auto_offset_reset="earliest",
        **security.kafka_python(),
    )  # fmt: skip
    # named as a client that knows the partition would name it (its metadata may be hidden)
    consumer.assign([TopicPartition(topic, 0)])
    received: list[bytes] = []
    refused = False
    try:
        for _ in range(3):
            batches = consumer.poll(timeout_ms=1000)
            received += [r.value for records in batches.values() for r in records]
    except TopicAuthorizationFailedError:
        refused = True  # a principal that may describe the topic is told so at the fetch
    finally:
        consumer.close()
    assert received == []
    may_describe = any(
        acl.name == topic and "Describe" in acl.operations
        for acl in kafka_acls.service_acls(APP_ID)[user]
    )
    assert refused == may_describe
    if not may_describe:  # the others do not learn that the topic exists
        client = KafkaAdminClient(bootstrap_servers=servers, **security.kafka_python())
        try:
            (described,) = client.describe_topics([topic])
        finally:
            client.close()
        assert described["error_code"] == TopicAuthorizationFailedError.errno


@pytest.mark.parametrize(
    ("user", "topic"),
    [
        (kafka_acls.FHIR_ENDPOINT, t.CT_STUDIES.name),
        (kafka_acls.FHIR_ENDPOINT, t.TRIAGE_CONFIG.name),
        (kafka_acls.INGEST, t.FHIR_RESOURCES.name),
        (kafka_acls.ADMIN_API, t.TRIAGE_ALERTS.name),
    ],
)
def test_a_principal_may_not_write_what_it_does_not_own(
    settings: Settings, broker: KafkaBroker, user: str, topic: str
) -> None:
    security = security_of(as_principal(settings, broker, user))
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        max_block_ms=10_000,
        **security.kafka_python(),
    )
    try:
        with pytest.raises((TopicAuthorizationFailedError, KafkaTimeoutError)) as refused:
            producer.send(topic, b"not yours").get(timeout=10)
    finally:
        producer.close()
    assert isinstance(refused.value, TopicAuthorizationFailedError), refused.value


def test_only_the_worker_may_create_topics_or_join_its_group(
    settings: Settings, broker: KafkaBroker
) -> None:
    servers = settings.kafka.bootstrap_servers
    fhir = security_of(as_principal(settings, broker, kafka_acls.FHIR_ENDPOINT))
    consumer = KafkaConsumer(
        t.FHIR_RESOURCES.name,
        bootstrap_servers=servers,
        group_id=APP_ID,
        consumer_timeout_ms=5000,
        **fhir.kafka_python(),
    )
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            list(consumer)
    finally:
        consumer.close()
    # the start-up check creates what is missing, where the principal may: here, nothing
    t.ensure_topics(servers, 2, timeout_s=5, app_id="ctriage-other", security=fhir)
    worker = security_of(as_principal(settings, broker, kafka_acls.WORKER))
    client = KafkaAdminClient(bootstrap_servers=servers, **admin_security(broker.security)
                              .kafka_python())  # fmt: skip
    try:
        assert not [name for name in client.list_topics() if name.startswith("ctriage-other")]
    finally:
        client.close()
    t.ensure_topics(servers, 2, timeout_s=30, app_id=APP_ID, security=worker)


def test_strangers_are_refused(settings: Settings, broker: KafkaBroker) -> None:
    servers = settings.kafka.bootstrap_servers
    assert broker.security is not None
    ca = broker.security.ca_file
    worker = security_of(as_principal(settings, broker, kafka_acls.WORKER))
    assert broker_answers(servers, security=worker)
    wrong_password = KafkaSecurity(
        "SASL_SSL", "SCRAM-SHA-512", kafka_acls.WORKER, SecretStr("guessed"), ca
    )
    unknown_user = KafkaSecurity("SASL_SSL", "SCRAM-SHA-512", "mallory", SecretStr("x"), ca)
    system_cas = KafkaSecurity(
        "SASL_SSL", "SCRAM-SHA-512", kafka_acls.WORKER, worker.password, None
    )
    server_log = broker.logs[1]
    before = server_log.read_text(errors="replace")
    for security in (wrong_password, unknown_user, system_cas, PLAINTEXT):
        assert not broker_answers(servers, timeout_ms=3000, security=security), security
    # and the broker says why: a bad login, and a handshake that was no TLS (PLAINTEXT) or that
    # the client broke off (it does not trust the certificate)
    time.sleep(1)
    new = server_log.read_text(errors="replace")[len(before) :]
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in new
    assert "SSL handshake failed" in new
    # the key material and passwords are the owner's only
    for path in [broker.security.keystore, broker.security.password_file(kafka_acls.WORKER)]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(broker.server_properties.stat().st_mode) == 0o600
