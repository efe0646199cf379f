"""The 3-node launcher's pieces that need no broker: ports, quorum, configs, found again."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.kafka import render_server_properties
from deploy.kafka_cluster import KafkaCluster, node_ports, quorum_voters, recorded_nodes
from deploy.services import LocalServices

pytestmark = pytest.mark.unit


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return dict(pairs)


def test_nodes_get_ports_a_hundred_apart_clear_of_worker_ports() -> None:
    assert node_ports(19092, 19093, 3) == [(19092, 19093), (19192, 19193), (19292, 19293)]
    worker_ports = {19100 + n for n in range(10)} | {16066 + n for n in range(10)}
    assert not {p for pair in node_ports(19092, 19093, 3) for p in pair} & worker_ports


def test_quorum_names_every_node_controller() -> None:
    assert quorum_voters(19093, 3) == "1@127.0.0.1:19093,2@127.0.0.1:19193,3@127.0.0.1:19293"


def test_a_clustered_node_replicates_internal_topics_three_times(tmp_path: Path) -> None:
    voters = quorum_voters(19093, 3)
    props = _props(
        render_server_properties(19192, 19193, tmp_path, node_id=2, quorum_voters=voters)
    )
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == voters
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19192"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    assert props["min.insync.replicas"] == "2"


def test_nodes_share_one_cluster_id_kept_in_the_run_dir(tmp_path: Path) -> None:
    cluster = KafkaCluster(tmp_path / "kafka", tmp_path / "cache", nodes=3)
    again = KafkaCluster(tmp_path / "kafka", tmp_path / "cache", nodes=3)
    assert len({node.cluster_id for node in cluster.nodes + again.nodes}) == 1
    assert cluster.bootstrap_servers == "127.0.0.1:19092,127.0.0.1:19192,127.0.0.1:19292"
    assert [node.run_dir.name for node in cluster.nodes] == ["node-0", "node-1", "node-2"]


def test_a_launched_cluster_is_found_again_by_its_node_folders(tmp_path: Path) -> None:
    assert recorded_nodes(tmp_path / "kafka") is None
    cluster = KafkaCluster(tmp_path / "kafka", tmp_path / "cache", nodes=3)
    for node in cluster.nodes:
        node.run_dir.mkdir(parents=True)
    assert recorded_nodes(tmp_path / "kafka") == 3


def test_services_run_a_cluster_only_when_asked(tmp_path: Path) -> None:
    single = LocalServices(tmp_path / "a", tmp_path / "cache", tmp_path / "models")
    assert single.kafka.bootstrap_servers == "127.0.0.1:19092"
    three = LocalServices(tmp_path / "b", tmp_path / "cache", tmp_path / "models", kafka_nodes=3)
    assert isinstance(three.kafka, KafkaCluster)
    assert len(three.kafka.nodes) == 3


def test_a_lower_session_timeout_floor_reaches_every_node(tmp_path: Path) -> None:
    cluster = KafkaCluster(tmp_path / "kafka", tmp_path / "cache", min_session_timeout_ms=3000)
    default = KafkaCluster(tmp_path / "other", tmp_path / "cache")
    for node, plain in zip(cluster.nodes, default.nodes, strict=True):
        node._write_config()
        plain._write_config()
        assert _props(node.server_properties.read_text())["group.min.session.timeout.ms"] == "3000"
        assert "group.min.session.timeout.ms" not in _props(plain.server_properties.read_text())
