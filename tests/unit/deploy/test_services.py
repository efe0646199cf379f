"""LocalServices and the ``services`` CLI when nothing runs (no servers started)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deploy.services import LocalServices, ServiceNameValues, ServiceStateValues
from streams.cli.services import app
from streams.services import port_of, services_from_settings
from streams.settings import KafkaSettings, Settings

pytestmark = pytest.mark.unit


def test_status_of_nothing_is_stopped(tmp_path: Path) -> None:
    services = LocalServices(
        tmp_path / "run",
        tmp_path / "cache",
        tmp_path / "models",
        kafka_port=1,
        triton_http_port=2,
        postgres_port=3,
        prometheus_port=4,
    )
    statuses = services.status()
    assert [s.name for s in statuses] == list(ServiceNameValues)
    assert {s.state for s in statuses} == {ServiceStateValues.STOPPED}
    assert [s.endpoint for s in statuses] == [
        "127.0.0.1:1",
        "http://127.0.0.1:2",
        "postgresql+psycopg://ctriage@127.0.0.1:3/ctriage",
        "http://127.0.0.1:4",
    ]
    assert statuses[0].run_dir == (tmp_path / "run" / "kafka").resolve()


def test_down_of_nothing_is_a_no_op(tmp_path: Path) -> None:
    services = LocalServices(tmp_path / "run", tmp_path / "cache", tmp_path / "models")
    statuses = services.down([ServiceNameValues.TRITON])
    assert [s.state for s in statuses] == [ServiceStateValues.STOPPED]


def test_settings_map_onto_the_launchers(tmp_path: Path) -> None:
    settings = Settings(
        run_dir=tmp_path / "run",
        cache_dir=tmp_path / "cache",
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:19555"),
    )
    services = services_from_settings(settings)
    assert services.kafka.port == 19555
    assert services.kafka.controller_port == settings.kafka.controller_port
    assert services.kafka.heap_mb == settings.kafka.heap_mb
    assert services.triton.http_port == settings.triton.http_port
    assert services.triton.model_repository == settings.triton.model_repository.resolve()
    assert services.postgres.port == settings.store.local_port
    assert services.prometheus.port == settings.monitoring.prometheus_port
    # Prometheus scrapes the worker and Triton
    assert services.prometheus.targets == [
        f"127.0.0.1:{settings.worker.metrics_port}",
        f"127.0.0.1:{settings.triton.metrics_port}",
    ]


@pytest.mark.parametrize(
    ("bootstrap", "port"),
    [("127.0.0.1:19092", 19092), ("localhost:9092,other:9093", 9092)],
)
def test_port_of_bootstrap_servers(bootstrap: str, port: int) -> None:
    assert port_of(bootstrap) == port


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_cli_status_prints_a_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTRIAGE_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("CTRIAGE_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("CTRIAGE_TRITON__HTTP_PORT", str(free_port()))
    monkeypatch.setenv("CTRIAGE_STORE__LOCAL_PORT", str(free_port()))
    monkeypatch.setenv("CTRIAGE_MONITORING__PROMETHEUS_PORT", str(free_port()))
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    for name in ("kafka", "triton", "postgres", "prometheus"):
        assert name in result.output
    assert result.output.count("stopped") == 4


def test_cli_up_reports_a_missing_model_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTRIAGE_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("COLUMNS", "200")
    args = ["up", "--only", "triton", "--model-repository", str(tmp_path / "absent")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "model_repository_missing" in result.output


def test_a_port_held_by_someone_else_is_reported(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        services = LocalServices(
            tmp_path / "run", tmp_path / "cache", tmp_path / "models", kafka_port=busy
        )
        kafka, triton, *_ = services.status()
    assert kafka.state is ServiceStateValues.PORT_BUSY
    assert kafka.pid is None
    assert triton.state is ServiceStateValues.STOPPED
