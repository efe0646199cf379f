"""Launch a local Prometheus (Debian package ``prometheus``) that scrapes the ctriage workers.

Layout under ``run_dir``::

    prometheus.yml  rules.yml  data/  prometheus.log  prometheus.pid

The configuration is generated: one scrape job ``ctriage`` over the workers' metrics endpoints
(``host:port``), the alerting rules of :data:`ALERT_RULES` (dead letters, latency, a worker without
partitions, a likely capacity breach, a target down). Web UI and HTTP API listen on loopback only.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploy.exceptions import ServiceDependencyMissing, ServiceReason
from deploy.process import LocalService, PidFile

logger = logging.getLogger(__name__)

SERVICE = "prometheus"
HOST = "127.0.0.1"
INSTALL_HINT = "install it with: apt-get install prometheus"

#: Alerting rules shipped with ctriage (Prometheus rule-file format); ``promtool`` checks them.
ALERT_RULES: dict[str, Any] = {
    "groups": [
        {
            "name": "ctriage",
            "rules": [
                {
                    "alert": "CtriageDeadLetters",
                    "expr": "sum by (stage, reason) "
                    "(increase(ctriage_dead_letters_total[10m])) > 0",
                    "labels": {"severity": "warning"},
                    "annotations": {
                        "summary": "{{ $labels.stage }}: dead-lettered messages "
                        "({{ $labels.reason }})",
                        "description": "Inputs were rejected in the last 10 minutes; read the "
                        "DLQ topic of the stage for the payloads.",
                    },
                },
                {
                    "alert": "CtriageSlowTriage",
                    "expr": "histogram_quantile(0.95, sum by (le) "
                    "(rate(ctriage_end_to_end_seconds_bucket[15m]))) > 60",
                    "for": "5m",
                    "labels": {"severity": "critical"},
                    "annotations": {
                        "summary": "p95 CT-to-risk latency above 60 s",
                        "description": "Emergency physicians wait for the risk: check Triton and "
                        "the worker's stage timings (ctriage_stage_seconds).",
                    },
                },
                {
                    "alert": "CtriageWorkerIdle",
                    "expr": "max(ctriage_assigned_partitions) == 0",
                    "for": "5m",
                    "labels": {"severity": "critical"},
                    "annotations": {
                        "summary": "no ctriage worker owns a partition",
                        "description": "Studies are not being scored: the worker group is empty.",
                    },
                },
                {
                    "alert": "CtriageCapacityBreachRisk",
                    # the worker's own breach alert uses CTRIAGE_WORKER__CAPACITY_BREACH_PROBABILITY
                    # (0.2 by default); paging starts higher
                    "expr": "max by (hospital, unit, resource) "
                    "(ctriage_capacity_breach_probability) >= 0.5",
                    "labels": {"severity": "warning"},
                    "annotations": {
                        "summary": "{{ $labels.hospital }} {{ $labels.unit }}: "
                        "{{ $labels.resource }} likely over capacity within the horizon",
                        "description": "P(breach) = {{ $value | humanizePercentage }} in the "
                        "latest forecast; see the ICU forecast dashboard.",
                    },
                },
                {
                    "alert": "CtriageTargetDown",
                    "expr": 'up{job="ctriage"} == 0',
                    "for": "2m",
                    "labels": {"severity": "critical"},
                    "annotations": {
                        "summary": "ctriage metrics endpoint {{ $labels.instance }} down"
                    },
                },
            ],
        }
    ]
}


def prometheus_binary() -> str:
    """Path of the Prometheus executable."""
    found = shutil.which("prometheus")
    if found is None:
        raise ServiceDependencyMissing(
            SERVICE, ServiceReason.BINARY_MISSING, f"prometheus not found; {INSTALL_HINT}"
        )
    return found


def render_config(targets: Sequence[str], scrape_interval_s: float) -> dict[str, Any]:
    """Prometheus' YAML configuration: scrape the workers, load :data:`ALERT_RULES`."""
    interval = f"{max(round(scrape_interval_s * 1000), 100)}ms"  # Prometheus durations are integers
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": ["rules.yml"],
        "scrape_configs": [
            {"job_name": "ctriage", "static_configs": [{"targets": list(targets)}]},
        ],
    }


class PrometheusServer(LocalService):
    """A local Prometheus on an explicit loopback port with its own data folder."""

    def __init__(
        self,
        run_dir: Path,
        targets: Sequence[str],
        port: int = 19090,
        scrape_interval_s: float = 5.0,
        retention: str = "7d",
    ) -> None:
        self.run_dir = run_dir.resolve()
        self.targets = list(targets)
        self.port = port
        self.scrape_interval_s = scrape_interval_s
        self.retention = retention
        self.config_path = self.run_dir / "prometheus.yml"
        self.rules_path = self.run_dir / "rules.yml"
        self.log_path = self.run_dir / "prometheus.log"
        self.url = f"http://{HOST}:{port}"
        self.service = SERVICE
        self.pid_file = PidFile(
            self.run_dir / "prometheus.pid", markers=("prometheus", str(self.config_path))
        )
        self._process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        """Write ``prometheus.yml`` and ``rules.yml`` into the run folder."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config = render_config(self.targets, self.scrape_interval_s)
        # JSON is valid YAML: no YAML writer needed.
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        self.rules_path.write_text(json.dumps(ALERT_RULES, indent=2), encoding="utf-8")

    def start(self, timeout_s: float = 60) -> None:
        """Write the configuration, launch Prometheus and wait until ``/-/ready`` answers."""
        self._refuse_start(HOST, (self.port,), self.url)
        binary = prometheus_binary()
        self.write_config()
        command = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.run_dir / 'data'}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address={HOST}:{self.port}",
            "--web.enable-lifecycle",  # POST /-/reload after a new target list
        ]
        self._launch(command, self.log_path, timeout_s)

    def is_healthy(self) -> bool:
        """Tell whether Prometheus answers ``/-/ready``."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def query(self, promql: str, timeout_s: float = 10) -> list[dict[str, Any]]:
        """Run an instant PromQL query; the ``result`` list of the HTTP API's answer."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise ValueError(f"prometheus query {promql!r} failed: {body}")
        return list(body["data"]["result"])

    def targets_health(self, timeout_s: float = 10) -> dict[str, str]:
        """Scrape target -> ``up`` / ``down`` / ``unknown``, from ``/api/v1/targets``."""
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=timeout_s) as response:
            body = json.loads(response.read())
        return {
            target["labels"]["instance"]: target["health"]
            for target in body["data"]["activeTargets"]
        }

    def firing_alerts(self, timeout_s: float = 10) -> list[str]:
        """Names of the alerts firing now, with their ``stage``/``reason`` labels if any."""
        with urllib.request.urlopen(f"{self.url}/api/v1/alerts", timeout=timeout_s) as response:
            body = json.loads(response.read())
        names = []
        for alert in body["data"]["alerts"]:
            if alert["state"] != "firing":
                continue
            labels = alert["labels"]
            detail = ", ".join(labels[k] for k in ("stage", "reason") if k in labels)
            names.append(f"{labels['alertname']} ({detail})" if detail else labels["alertname"])
        return names
