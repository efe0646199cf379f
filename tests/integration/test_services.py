"""Real Kafka and Triton started by the deploy launchers: round trips, restarts, the CLI."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.http as triton_http
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.fetcher import ConsumerRecord

from deploy.kafka import KafkaBroker
from deploy.maven import resolve_kafka_jars
from deploy.triton import TritonServer
from streams.kafka_health import broker_answers
from streams.settings import load_settings

pytestmark = pytest.mark.integration

ADD_ONE_CONFIG = """\
# A test model: Y = X + 1, FP32 vectors of any length.
name: "add_one"
backend: "python"  # runs 1/model.py in the Python backend stub
max_batch_size: 0  # no implicit batch dimension
input [
  {
    name: "X"
    data_type: TYPE_FP32
    dims: [ -1 ]
  }
]
output [
  {
    name: "Y"
    data_type: TYPE_FP32
    dims: [ -1 ]
  }
]
instance_group [
  {
    count: 1
    kind: KIND_CPU
  }
]
"""

ADD_ONE_MODEL = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            y = (x + np.float32(1)).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", y)]))
        return responses
"""


def write_add_one_repository(root: Path) -> Path:
    """Create a model repository with the one-model ``add_one`` Python-backend model."""
    (root / "add_one" / "1").mkdir(parents=True)
    (root / "add_one" / "config.pbtxt").write_text(ADD_ONE_CONFIG, encoding="utf-8")
    (root / "add_one" / "1" / "model.py").write_text(ADD_ONE_MODEL, encoding="utf-8")
    return root


def assert_gone(pid: int) -> None:
    """The process is gone (or a zombie of an exited child that nobody waits for)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_kafka_produce_and_consume_one_record(kafka_broker: KafkaBroker) -> None:
    topic = "ctriage.test.roundtrip"
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        assert topic in admin.list_topics()
    finally:
        admin.close()

    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, acks="all")
    try:
        producer.send(topic, key=b"study-1", value=b'{"lesion_percent": 12.5}').get(timeout=30)
    finally:
        producer.close()

    consumer = KafkaConsumer(
        bootstrap_servers=kafka_broker.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + 30
        while not records and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
    finally:
        consumer.close()
    assert [(r.key, r.value) for r in records] == [(b"study-1", b'{"lesion_percent": 12.5}')]


def test_kafka_broker_is_found_through_its_pid_file(kafka_broker: KafkaBroker) -> None:
    other = KafkaBroker(
        kafka_broker.run_dir,
        kafka_broker.cache_dir,
        kafka_broker.port,
        kafka_broker.controller_port,
        ready_probe=broker_answers,
    )
    assert other.pid is not None
    assert other.pid == kafka_broker.pid
    assert other.is_healthy()


def test_kafka_formats_storage_when_the_cluster_id_starts_with_a_dash(
    kafka_broker: KafkaBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One random id in 64 starts with "-"; kafka-storage once took it for an option and failed."""
    import deploy.kafka

    cluster_id = "-" + deploy.kafka.new_cluster_id()[1:]
    monkeypatch.setattr(deploy.kafka, "new_cluster_id", lambda: cluster_id)
    broker = KafkaBroker(
        tmp_path,
        kafka_broker.cache_dir,
        port=29194,
        controller_port=29195,
        ready_probe=broker_answers,
    )
    broker._write_config()
    java = shutil.which("java")
    assert java is not None
    broker._format_storage(java, f"{resolve_kafka_jars(kafka_broker.cache_dir)}/*")
    assert broker.is_formatted()
    meta = (tmp_path / "data" / "meta.properties").read_text(encoding="utf-8")
    assert f"cluster.id={cluster_id}" in meta.splitlines()


def test_kafka_stops_from_another_object_and_restarts_on_formatted_storage(
    tmp_path: Path,
) -> None:
    cache_dir = load_settings().cache_dir
    first = KafkaBroker(
        tmp_path,
        cache_dir,
        port=29192,
        controller_port=29193,
        heap_mb=384,
        ready_probe=broker_answers,
    )
    first.start(timeout_s=120)
    pid = first.pid
    assert pid is not None
    # `ctriage services down` runs in another process: it only has the pid file to go on
    KafkaBroker(
        tmp_path, cache_dir, port=29192, controller_port=29193, ready_probe=broker_answers
    ).stop()
    assert first.pid is None
    assert not (tmp_path / "kafka.pid").exists()
    assert_gone(pid)
    first.stop()  # nothing left to stop: only reaps our child and forgets it

    second = KafkaBroker(
        tmp_path,
        cache_dir,
        port=29192,
        controller_port=29193,
        heap_mb=384,
        ready_probe=broker_answers,
    )
    assert second.is_formatted()
    with second:
        assert second.is_healthy()
        second_pid = second.pid
    assert second_pid is not None
    assert_gone(second_pid)


def test_triton_serves_a_python_backend_model(tmp_path: Path) -> None:
    repository = write_add_one_repository(tmp_path / "models")
    server = TritonServer(
        tmp_path / "run", repository, http_port=28010, grpc_port=28011, metrics_port=28012
    )
    server.start(timeout_s=120)
    try:
        pid = server.pid
        assert pid is not None
        assert server.is_healthy()
        client = triton_http.InferenceServerClient(server.http_url)
        try:
            assert client.is_model_ready("add_one")
            x = np.arange(5, dtype=np.float32)
            request = triton_http.InferInput("X", list(x.shape), "FP32")
            request.set_data_from_numpy(x, binary_data=True)
            wanted = triton_http.InferRequestedOutput("Y", binary_data=True)
            result = client.infer("add_one", [request], outputs=[wanted])
            np.testing.assert_array_equal(result.as_numpy("Y"), x + 1)
        finally:
            client.close()
    finally:
        server.stop()
    assert server.pid is None
    assert not server.is_healthy()
    assert_gone(pid)


@pytest.mark.usefixtures("local_postgres_purged")
def test_cli_up_outlives_the_cli_then_down_stops_everything(
    tmp_path: Path, port_offset: int
) -> None:
    kafka_port = 29292 + port_offset
    repository = write_add_one_repository(tmp_path / "models")
    env = {
        **os.environ,
        "CTRIAGE_RUN_DIR": str(tmp_path / "run"),
        "CTRIAGE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
        "CTRIAGE_KAFKA__CONTROLLER_PORT": str(29293 + port_offset),
        "CTRIAGE_KAFKA__HEAP_MB": "384",
        "CTRIAGE_TRITON__HTTP_PORT": str(28020 + port_offset),
        "CTRIAGE_TRITON__GRPC_PORT": str(28021 + port_offset),
        "CTRIAGE_TRITON__METRICS_PORT": str(28022 + port_offset),
        "CTRIAGE_TRITON__MODEL_REPOSITORY": str(repository),
        "CTRIAGE_STORE__LOCAL_PORT": str(25532 + port_offset),
        "CTRIAGE_MONITORING__PROMETHEUS_PORT": str(29390 + port_offset),
        "CTRIAGE_WORKER__METRICS_PORT": str(29391 + port_offset),
        "COLUMNS": "200",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        code = "from streams.cli.services import app; app()"
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    up = cli("up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        status = cli("status")
        assert status.returncode == 0, status.stderr
        assert status.stdout.count("running") == 4, status.stdout
        kafka_pid = KafkaBroker(
            tmp_path / "run" / "kafka",
            load_settings().cache_dir,
            kafka_port,
            ready_probe=broker_answers,
        ).pid
        assert kafka_pid is not None
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.count("stopped") == 4, down.stdout
    assert_gone(kafka_pid)
    assert not list((tmp_path / "run").glob("*/*.pid"))


@pytest.mark.usefixtures("local_postgres_purged")
def test_demo_services_that_fail_halfway_leave_nothing_running(
    tmp_path: Path, port_offset: int
) -> None:
    from deploy.exceptions import ServiceStartError
    from streams.demo import start_services
    from streams.settings import Settings

    kafka_port, triton_port = 29492 + port_offset, 28030 + port_offset
    postgres_port = 25632 + port_offset
    settings = Settings(
        run_dir=tmp_path / "run",
        kafka={
            "bootstrap_servers": f"127.0.0.1:{kafka_port}",
            "controller_port": 29493 + port_offset,
            "heap_mb": 384,
        },
        triton={
            "http_port": triton_port,
            "grpc_port": triton_port + 1,
            "metrics_port": triton_port + 2,
            "model_repository": write_add_one_repository(tmp_path / "models"),
        },
        store={"local_port": postgres_port},
        monitoring={"prometheus_port": 29490 + port_offset},
    )
    blocker = socket.create_server(("127.0.0.1", postgres_port))  # PostgreSQL cannot bind
    with blocker, pytest.raises(ServiceStartError, match="postgres"):
        start_services(settings)
    for port in (kafka_port, triton_port):  # started before PostgreSQL failed, then stopped
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
    assert not list((tmp_path / "run").glob("*/*.pid"))
