"""Render every overlay of the Kubernetes deployment and validate it offline (``make lint``).

``python -m deploy.k8s.validate`` renders each folder under ``deploy/k8s/overlays`` with
``kubectl kustomize`` (no cluster needed), validates every object against its schema (see
:mod:`deploy.k8s.schemas` for what is checked against what) and then checks what no schema can:
the PrometheusRule is the generated one, the worker never scales past its partitions, every
ConfigMap and volume claim a pod uses is rendered, every Service and PodMonitor selects pods that
have the port it names. It prints one line per kind and exits 1 on the first overlay with errors
listed. Strimzi objects are checked against our minimal schemas only, and the report says so.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deploy.k8s import rules, schemas

K8S_ROOT = Path(__file__).resolve().parent
OVERLAYS = K8S_ROOT / "overlays"
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")


class RenderError(RuntimeError):
    """kubectl is missing or could not render an overlay."""


@dataclass
class Report:
    """What one overlay rendered to and what was wrong with it."""

    overlay: str
    kinds: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def lines(self) -> Iterator[str]:
        """The report as text lines: kinds with their schema's source, then the errors."""
        total = sum(self.kinds.values())
        yield f"{self.overlay}: {total} objects, {len(self.errors)} errors"
        for (api_version, kind), count in sorted(self.kinds.items()):
            source = schemas.schema_source(api_version, kind)
            yield f"  {count:3d} {kind:<22} {api_version:<28} {source}"
        yield from (f"  ERROR {error}" for error in self.errors)


def render(overlay: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` renders for one overlay (or base) folder."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RenderError("kubectl not found (Debian package kubectl): it renders kustomize")
    done = subprocess.run(
        [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RenderError(f"kubectl kustomize {overlay}: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _name(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def _pod_templates(objects: Sequence[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj.get("kind") in WORKLOADS:
            yield _name(obj), obj["spec"]["template"]


def _container_ports(template: dict[str, Any]) -> set[str | int]:
    ports: set[str | int] = set()
    for container in template["spec"].get("containers", []):
        for port in container.get("ports", []):
            ports.update({port["containerPort"], port.get("name", port["containerPort"])})
    return ports


def _selects(selector: dict[str, str], template: dict[str, Any]) -> bool:
    labels = template.get("metadata", {}).get("labels", {})
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_references(objects: Sequence[dict[str, Any]]) -> list[str]:
    """ConfigMaps and claims that pods use exist; Services and PodMonitors reach a named port."""
    have = {(o.get("kind"), o.get("metadata", {}).get("name")) for o in objects}
    errors = []
    for where, template in _pod_templates(objects):
        spec = template["spec"]
        used = [
            ("ConfigMap", ref["configMapRef"]["name"])
            for c in spec.get("containers", []) + spec.get("initContainers", [])
            for ref in c.get("envFrom", [])
            if "configMapRef" in ref
        ]
        used += [("ConfigMap", v["configMap"]["name"]) for v in spec.get("volumes", [])
                 if "configMap" in v]  # fmt: skip
        used += [("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"])
                 for v in spec.get("volumes", []) if "persistentVolumeClaim" in v]  # fmt: skip
        errors += [f"{where} uses {kind}/{name}, which is not rendered"
                   for kind, name in used if (kind, name) not in have]  # fmt: skip
    templates = list(_pod_templates(objects))
    for obj in objects:
        if obj.get("kind") == "Service":
            selector, ports = obj["spec"].get("selector", {}), obj["spec"].get("ports", [])
            wanted = [p.get("targetPort", p["port"]) for p in ports]
        elif obj.get("kind") == "PodMonitor":
            selector = obj["spec"]["selector"].get("matchLabels", {})
            wanted = [e["port"] for e in obj["spec"].get("podMetricsEndpoints", [])]
        else:
            continue
        matched = [t for _, t in templates if _selects(selector, t)]
        if not matched:
            errors.append(f"{_name(obj)} selects no pod ({selector})")
        for template in matched:
            missing = [p for p in wanted if p not in _container_ports(template)]
            if missing:
                errors.append(f"{_name(obj)}: pods it selects have no port {missing}")
    return errors


def _config_value(objects: Sequence[dict[str, Any]], key: str) -> str | None:
    for obj in objects:
        name = obj.get("metadata", {}).get("name", "")
        if obj.get("kind") == "ConfigMap" and name.startswith("ctriage-config"):
            value = obj.get("data", {}).get(key)
            return None if value is None else str(value)
    return None


def check_consistency(objects: Sequence[dict[str, Any]]) -> list[str]:
    """The generated PrometheusRule is current; KEDA never scales past the partitions."""
    errors = []
    for obj in objects:
        generated = rules.prometheus_rule()
        if _name(obj) == "PrometheusRule/ctriage" and obj["spec"] != generated["spec"]:
            errors.append(
                "PrometheusRule/ctriage differs from deploy.prometheus.ALERT_RULES: run "
                "python -m deploy.k8s.rules > deploy/k8s/base/prometheus-rule.yaml"
            )
        if obj.get("kind") == "ScaledObject":
            partitions = _config_value(objects, "CTRIAGE_KAFKA__PARTITIONS")
            top = obj["spec"].get("maxReplicaCount", 100)  # KEDA's default
            if partitions is None or top > int(partitions):
                errors.append(
                    f"{_name(obj)} may scale to {top} replicas, more than the "
                    f"{partitions} partitions of CTRIAGE_KAFKA__PARTITIONS"
                )
    return errors


def validate_overlay(overlay: Path) -> Report:
    """Render one overlay and collect every error of every check."""
    repository = K8S_ROOT.parent.parent
    shown = overlay.relative_to(repository) if overlay.is_relative_to(repository) else overlay
    report = Report(str(shown))
    objects = render(overlay)
    for obj in objects:
        report.kinds[(obj.get("apiVersion", "?"), obj.get("kind", "?"))] += 1
        report.errors += [f"{_name(obj)}: {e}" for e in schemas.validate_object(obj)]
    report.errors += check_references(objects)
    report.errors += check_consistency(objects)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Validate the overlays (all of them by default); 0 when every check passed."""
    parser = argparse.ArgumentParser(prog="python -m deploy.k8s.validate", description=__doc__)
    parser.add_argument("overlays", nargs="*", type=Path, help="overlay folders (default: all)")
    args = parser.parse_args(argv)
    overlays = args.overlays or sorted(p for p in OVERLAYS.iterdir() if p.is_dir())
    failed = False
    for overlay in overlays:
        try:
            report = validate_overlay(overlay.resolve())
        except (RenderError, schemas.SchemaUnavailable) as e:
            sys.stderr.write(f"{overlay}: {e}\n")
            return 2
        sys.stdout.write("\n".join(report.lines()) + "\n")
        failed = failed or bool(report.errors)
    sys.stdout.write(
        "Strimzi kinds (Kafka, KafkaNodePool, KafkaTopic, KafkaUser) were checked against our "
        "minimal schemas (deploy/k8s/strimzi.py), NOT Strimzi's CRDs.\n"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
