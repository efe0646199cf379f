"""Launch a local Kafka cluster: N combined broker+controller KRaft nodes on 127.0.0.1.

Node ``i`` (0-based, KRaft ``node.id`` i+1) listens on ``port + NODE_PORT_STEP * i`` (clients)
and ``controller_port + NODE_PORT_STEP * i`` (the quorum); the step keeps clear of the workers'
``metrics_port + N`` and ``web_port + N``. Layout under ``run_dir``::

    cluster.id  node-0/ node-1/ node-2/ (each as :class:`deploy.kafka.KafkaBroker` lays it out)

Nodes start together (a lone node of a 3-voter quorum waits for a second one) and each is
waited for; a node killed by a test or a crash is started again alone with ``start()``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from deploy.exceptions import ServiceStartError
from deploy.kafka import HOST, SERVICE, KafkaBroker, ReadyProbe, new_cluster_id
from deploy.kafka_security import BrokerSecurity
from deploy.process import LocalService, PidFile, wait_until_healthy

logger = logging.getLogger(__name__)

#: Port distance between consecutive nodes (19092, 19192, 19292 with the default base).
NODE_PORT_STEP = 100


def node_ports(port: int, controller_port: int, nodes: int) -> list[tuple[int, int]]:
    """(client port, controller port) of each node."""
    return [(port + NODE_PORT_STEP * i, controller_port + NODE_PORT_STEP * i) for i in range(nodes)]


def quorum_voters(controller_port: int, nodes: int) -> str:
    """``controller.quorum.voters``: every node's id and controller endpoint."""
    ports = (controller_port + NODE_PORT_STEP * i for i in range(nodes))
    return ",".join(f"{i + 1}@{HOST}:{p}" for i, p in enumerate(ports))


class KafkaCluster(LocalService):
    """Several local KRaft nodes forming one cluster; ``start()`` launches the ones not running."""

    def __init__(
        self,
        run_dir: Path,
        cache_dir: Path,
        nodes: int = 3,
        port: int = 19092,
        controller_port: int = 19093,
        heap_mb: int = 512,
        num_partitions: int = 4,
        ready_probe: ReadyProbe | None = None,
        security: BrokerSecurity | None = None,
        min_session_timeout_ms: int | None = None,
    ) -> None:
        self.run_dir = run_dir.resolve()
        self.service = SERVICE
        # one CA, broker certificate and set of passwords for every node (``security.home``)
        self.security = security
        voters = quorum_voters(controller_port, nodes)
        cluster_id = self._cluster_id()
        self.nodes = [
            KafkaBroker(
                self.run_dir / f"node-{i}",
                cache_dir,
                port=client,
                controller_port=controller,
                heap_mb=heap_mb,
                num_partitions=num_partitions,
                ready_probe=ready_probe,
                node_id=i + 1,
                quorum_voters=voters,
                cluster_id=cluster_id,
                security=security,
                min_session_timeout_ms=min_session_timeout_ms,
            )
            for i, (client, controller) in enumerate(node_ports(port, controller_port, nodes))
        ]
        self.port = port
        self.bootstrap_servers = ",".join(node.bootstrap_servers for node in self.nodes)
        # ``services status|up`` look at one pid: the first node's (``node_states`` tells all)
        self.pid_file: PidFile = self.nodes[0].pid_file

    def _cluster_id(self) -> str:
        """The id every node is formatted with, kept so a node formatted later joins the same."""
        path = self.run_dir / "cluster.id"
        if path.is_file():
            return path.read_text(encoding="utf-8").strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        cluster_id = new_cluster_id()
        path.write_text(cluster_id + "\n", encoding="utf-8")
        return cluster_id

    def start(self, timeout_s: float = 120) -> None:
        """Launch every node that is not running, then wait until each answers.

        On a failure every node launched here is stopped again and the error propagates.
        """
        launched = [node for node in self.nodes if node.pid_file.live_process() is None]
        try:
            processes = [(node, node.spawn()) for node in launched]
            for node, process in processes:
                waited = wait_until_healthy(
                    SERVICE, process, node.is_healthy, timeout_s, logs=node.logs
                )
                logger.info("kafka node %d ready after %.1f s", node.node_id, waited)
        except ServiceStartError:
            for node in launched:
                node.stop(timeout_s=10)
            raise
        if launched:
            self.nodes[0].provision()

    def is_healthy(self) -> bool:
        """Every node answers."""
        return all(node.is_healthy() for node in self.nodes)

    def node_states(self) -> list[bool]:
        """Whether each node's process is alive."""
        return [node.pid_file.live_process() is not None for node in self.nodes]

    def stop(self, timeout_s: float = 30) -> None:
        """Stop every node (a no-op for those not running).

        All are asked first: the last node stopped one by one has lost its quorum and waits out
        its controlled shutdown until the SIGKILL.
        """
        for node in self.nodes:
            process = node.pid_file.live_process()
            if process is not None:
                process.terminate()
        for node in reversed(self.nodes):
            node.stop(timeout_s=timeout_s)


def recorded_nodes(run_dir: Path) -> int | None:
    """How many nodes a cluster launched into ``run_dir`` had (``None``: no cluster there).

    ``services down|status`` use it, so a cluster started with ``--kafka-nodes 3`` is found
    again without repeating the option.
    """
    count = len(list(run_dir.glob("node-*")))
    return count if count > 1 and (run_dir / "cluster.id").is_file() else None
