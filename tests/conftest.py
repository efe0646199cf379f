"""Shared fixtures: the repository root, the real data folder, and real Kafka / Triton servers.

The service fixtures start real processes on test ports (Kafka 29092/29093, Triton 28000-28002,
Orthanc 28042/24242 with our C-STORE receiver as its modality on 21112, PostgreSQL 25432)
that do not clash with a running demo (19092, 18000). They fail the test loudly, with the server's
log tail, when the service cannot start: an integration test never skips for a missing service.
``CTRIAGE_TEST_PORT_OFFSET`` shifts every test port, so two checkouts can run their suites at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from paths import REPO_ROOT

from deploy.exceptions import ServiceError
from deploy.kafka import KafkaBroker
from deploy.orthanc import OrthancServer
from deploy.postgres import PostgresServer
from deploy.triton import TritonServer
from streams.kafka_health import broker_answers
from streams.settings import load_settings

PORT_OFFSET = int(os.environ.get("CTRIAGE_TEST_PORT_OFFSET", "0"))
KAFKA_TEST_PORT = 29092 + PORT_OFFSET
KAFKA_TEST_CONTROLLER_PORT = 29093 + PORT_OFFSET
TRITON_TEST_HTTP_PORT = 28000 + PORT_OFFSET
TRITON_TEST_GRPC_PORT = 28001 + PORT_OFFSET
TRITON_TEST_METRICS_PORT = 28002 + PORT_OFFSET
ORTHANC_TEST_HTTP_PORT = 28042 + PORT_OFFSET
ORTHANC_TEST_DICOM_PORT = 24242 + PORT_OFFSET
#: Our C-STORE receiver in tests; Orthanc knows it as modality "ctriage".
RECEIVER_TEST_PORT = 21112 + PORT_OFFSET
RECEIVER_TEST_AET = "CTRIAGE"
POSTGRES_TEST_PORT = 25432 + PORT_OFFSET


@pytest.fixture(scope="session")
def port_offset() -> int:
    """Added to every fixed port a test opens (``CTRIAGE_TEST_PORT_OFFSET``, default 0)."""
    return PORT_OFFSET


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The project checkout."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data(repo_root: Path) -> Path:
    """The real public data in ``../shared/data`` (skips only where that folder does not exist)."""
    path = (repo_root / ".." / "shared" / "data").resolve()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent on this machine (see its README)")
    return path


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A real Kafka 4.1 broker for the whole session (jars cached in the normal cache dir)."""
    broker = KafkaBroker(
        run_dir=tmp_path_factory.mktemp("kafka"),
        cache_dir=load_settings().cache_dir,
        port=KAFKA_TEST_PORT,
        controller_port=KAFKA_TEST_CONTROLLER_PORT,
        heap_mb=512,
        ready_probe=broker_answers,
    )
    try:
        broker.start(timeout_s=120)
    except ServiceError as e:
        pytest.fail(f"the Kafka broker for the tests did not start: {e}", pytrace=False)
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def triton_server(
    tmp_path_factory: pytest.TempPathFactory, repo_root: Path
) -> Iterator[TritonServer]:
    """A real Triton server on ``inference/model_repository`` for the whole session."""
    server = TritonServer(
        run_dir=tmp_path_factory.mktemp("triton"),
        model_repository=repo_root / "inference" / "model_repository",
        http_port=TRITON_TEST_HTTP_PORT,
        grpc_port=TRITON_TEST_GRPC_PORT,
        metrics_port=TRITON_TEST_METRICS_PORT,
    )
    try:
        server.start(timeout_s=180)
    except ServiceError as e:
        pytest.fail(f"the Triton server for the tests did not start: {e}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def orthanc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """A real Orthanc PACS (DICOMweb on) whose modality ``ctriage`` is our test receiver."""
    server = OrthancServer(
        run_dir=tmp_path_factory.mktemp("orthanc"),
        http_port=ORTHANC_TEST_HTTP_PORT,
        dicom_port=ORTHANC_TEST_DICOM_PORT,
        modalities={"ctriage": (RECEIVER_TEST_AET, "127.0.0.1", RECEIVER_TEST_PORT)},
    )
    try:
        server.start(timeout_s=60)
    except ServiceError as e:
        pytest.fail(f"the Orthanc server for the tests did not start: {e}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A real PostgreSQL for the reporting store (fsync off; each test module its own database)."""
    server = PostgresServer(
        run_dir=tmp_path_factory.mktemp("postgres"), port=POSTGRES_TEST_PORT, durable=False
    )
    try:
        server.start(timeout_s=60)
    except ServiceError as e:
        pytest.fail(f"the PostgreSQL server for the tests did not start: {e}", pytrace=False)
    yield server
    server.stop()
    server.purge()


@pytest.fixture
def local_postgres_purged(tmp_path: Path) -> Iterator[None]:
    """Deletes, after the test, the cluster its ``ctriage services up`` made under
    ``tmp_path/run``: as root that cluster lives in ``$TMPDIR/ctriage-postgres-<hash>``, outside
    the test's folders (pytest's are closed to the postgres account), and ``services down``
    keeps a cluster's data, as it should for a user: 46 MB were left per such test and run.
    ``ctriage demo`` runs its services under ``run/demo``."""
    yield
    for run_dir in (tmp_path / "run", tmp_path / "run" / "demo"):
        PostgresServer(run_dir / "postgres").purge()


@pytest.fixture(scope="session")
def receiver_address() -> tuple[str, int]:
    """AE title and port of our C-STORE receiver in tests (Orthanc's modality ``ctriage``)."""
    return RECEIVER_TEST_AET, RECEIVER_TEST_PORT
