"""Kafka launcher pieces that need no broker: config files, jar cache, missing binaries."""

from __future__ import annotations

import base64
import os
import socket
import stat
from pathlib import Path

import pytest

from deploy import maven
from deploy.exceptions import (
    ServiceDependencyMissing,
    ServiceReason,
    ServiceStartError,
)
from deploy.kafka import (
    KafkaBroker,
    new_cluster_id,
    render_log4j2_properties,
    render_server_properties,
)

pytestmark = pytest.mark.unit


def parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def fake_binary(bin_dir: Path, name: str, script: str) -> Path:
    """Write an executable shell script called ``name`` into ``bin_dir``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script + "\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_server_properties_describe_a_single_kraft_node(tmp_path: Path) -> None:
    props = parse_properties(render_server_properties(19092, 19093, tmp_path / "data", 6))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == f"{props['node.id']}@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["num.partitions"] == "6"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"
    replication = {k: v for k, v in props.items() if "replication.factor" in k or "isr" in k}
    assert len(replication) >= 6
    assert set(replication.values()) == {"1"}


def test_log4j2_properties_log_to_the_given_file(tmp_path: Path) -> None:
    props = parse_properties(render_log4j2_properties(tmp_path / "server.log"))
    assert props["appender.file.type"] == "File"
    assert props["appender.file.fileName"] == str(tmp_path / "server.log")
    assert props["rootLogger.appenderRef.file.ref"] == props["appender.file.name"]


def test_cluster_ids_are_random_base64url_uuids() -> None:
    ids = {new_cluster_id() for _ in range(20)}
    assert len(ids) == 20
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_pom_names_the_broker_and_the_log4j2_binding() -> None:
    pom = maven.render_pom()
    for coordinate in ("kafka_2.13", "4.1.1", "log4j-core", "log4j-slf4j-impl", "2.24.3"):
        assert coordinate in pom


def test_resolved_jars_are_reused_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = maven.kafka_home(tmp_path)
    (home / "lib").mkdir(parents=True)
    (home / ".resolved").write_text("kafka_2.13-4.1.1.jar\n", encoding="utf-8")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no mvn anywhere
    assert maven.resolve_kafka_jars(tmp_path) == home / "lib"


def test_missing_maven_raises_with_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ServiceDependencyMissing) as raised:
        maven.resolve_kafka_jars(tmp_path / "cache")
    assert raised.value.reason is ServiceReason.BINARY_MISSING
    assert "apt-get install default-jdk-headless maven" in str(raised.value)


def test_maven_failure_is_reported_with_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_binary(tmp_path / "bin", "mvn", "echo 'Could not resolve dependencies' >&2; exit 1")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(ServiceStartError) as raised:
        maven.resolve_kafka_jars(tmp_path / "cache")
    assert raised.value.reason is ServiceReason.DEPENDENCY_RESOLUTION_FAILED
    assert "Could not resolve dependencies" in str(raised.value)
    assert not maven.is_resolved(tmp_path / "cache")


def test_successful_resolution_writes_the_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the fake mvn copies "dependencies" into -DoutputDirectory=..., as the real plugin does
    script = (
        'for arg in "$@"; do case "$arg" in -DoutputDirectory=*) out="${arg#*=}";; esac; done\n'
        'mkdir -p "$out" && touch "$out/kafka_2.13-4.1.1.jar" "$out/log4j-core-2.24.3.jar"'
    )
    fake_binary(tmp_path / "bin", "mvn", script)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    lib = maven.resolve_kafka_jars(tmp_path / "cache")
    assert sorted(p.name for p in lib.iterdir()) == [
        "kafka_2.13-4.1.1.jar",
        "log4j-core-2.24.3.jar",
    ]
    assert maven.is_resolved(tmp_path / "cache")
    assert "kafka_2.13" in (lib.parent / "pom.xml").read_text(encoding="utf-8")


def test_missing_java_raises_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    broker = KafkaBroker(tmp_path / "run", tmp_path / "cache", port=1, controller_port=2)
    with pytest.raises(ServiceDependencyMissing) as raised:
        broker.start()
    assert "'java' not found" in str(raised.value)
    assert not (tmp_path / "run" / "kafka.pid").exists()


def test_busy_port_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_binary(tmp_path / "bin", "java", "exit 1")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        broker = KafkaBroker(tmp_path / "run", tmp_path / "cache", port=busy, controller_port=1)
        with pytest.raises(ServiceStartError) as raised:
            broker.start()
    assert raised.value.reason is ServiceReason.PORT_IN_USE
    assert str(busy) in raised.value.detail


def test_stop_without_a_running_broker_is_a_no_op(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path, tmp_path / "cache", port=1, controller_port=2)
    broker.stop()
    assert broker.pid is None
    assert broker.bootstrap_servers == "127.0.0.1:1"
