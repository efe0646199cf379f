"""A real Prometheus scrapes ctriage's metrics and fires the shipped dead-letter alert."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import start_http_server

from deploy.exceptions import ServiceError
from deploy.prometheus import PrometheusServer
from streams.dlq import StreamReason
from streams.metrics import CAPACITY_BREACH_PROBABILITY, DEAD_LETTERS, MESSAGES, REGISTRY

pytestmark = pytest.mark.integration


def wait_for(check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout_s
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(0.25)
        value = check()
    assert value, f"condition not met within {timeout_s} s (last value {value!r})"
    return value


@pytest.fixture(scope="module")
def exporter(port_offset: int) -> Iterator[str]:
    """The worker's metrics registry served over HTTP, as ``ctriage worker`` serves it."""
    port = 29191 + port_offset
    server, thread = start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
    yield f"127.0.0.1:{port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def prometheus(
    exporter: str, port_offset: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    server = PrometheusServer(
        tmp_path_factory.mktemp("prometheus"),
        targets=[exporter],
        port=29090 + port_offset,
        scrape_interval_s=0.5,
    )
    try:
        server.start(timeout_s=60)
    except ServiceError as e:
        pytest.fail(f"Prometheus for the tests did not start: {e}", pytrace=False)
    yield server
    server.stop()


def test_generated_config_and_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool comes with the prometheus package (make system-deps)"
    server = PrometheusServer(tmp_path, targets=["127.0.0.1:19100"])
    server.write_config()
    for check in (
        ["check", "config", str(server.config_path)],
        ["check", "rules", str(server.rules_path)],
    ):
        result = subprocess.run([promtool, *check], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_the_worker_metrics(prometheus: PrometheusServer, exporter: str) -> None:
    MESSAGES.labels(stage="prometheus-test").inc(3)
    wait_for(lambda: prometheus.targets_health().get(exporter) == "up")
    result = wait_for(
        lambda: prometheus.query('ctriage_messages_total{stage="prometheus-test"}'), timeout_s=30
    )
    assert float(result[0]["value"][1]) >= 3


def test_dead_letters_fire_the_shipped_alert(prometheus: PrometheusServer, exporter: str) -> None:
    reason = str(StreamReason.MALFORMED_RECORD)
    wait_for(lambda: prometheus.targets_health().get(exporter) == "up")
    # one scrape before the increase, so that increase() has a before and an after
    DEAD_LETTERS.labels(stage="prometheus-test", reason=reason).inc(0)
    wait_for(lambda: prometheus.query('ctriage_dead_letters_total{stage="prometheus-test"}'))
    DEAD_LETTERS.labels(stage="prometheus-test", reason=reason).inc(2)

    def firing() -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{prometheus.url}/api/v1/alerts", timeout=5) as response:
            alerts = json.loads(response.read())["data"]["alerts"]
        return [
            a
            for a in alerts
            if a["labels"].get("alertname") == "CtriageDeadLetters"
            and a["labels"].get("stage") == "prometheus-test"
            and a["state"] == "firing"
        ]

    alert = wait_for(firing, timeout_s=30)[0]
    assert alert["labels"]["reason"] == reason
    assert "dead-lettered" in alert["annotations"]["summary"]


def test_capacity_breach_gauge_fires_the_breach_alert(
    prometheus: PrometheusServer, exporter: str
) -> None:
    labels = {"hospital": "prom-test-hospital", "unit": "icu-a", "resource": "ventilators"}
    CAPACITY_BREACH_PROBABILITY.labels(**labels).set(0.8)

    def firing() -> list[str]:
        return [a for a in prometheus.firing_alerts() if a.startswith("CtriageCapacityBreachRisk")]

    assert wait_for(firing, timeout_s=30)
    with urllib.request.urlopen(f"{prometheus.url}/api/v1/alerts", timeout=5) as response:
        alerts = json.loads(response.read())["data"]["alerts"]
    ours = [a for a in alerts if a["labels"].get("hospital") == "prom-test-hospital"]
    assert ours and ours[0]["labels"]["resource"] == "ventilators"
    assert "over capacity" in ours[0]["annotations"]["summary"]
