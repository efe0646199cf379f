"""The offline validator passes the shipped overlays and fails broken ones, each for its reason.

Each broken overlay is a kustomize overlay on the real base written into a temporary folder, so
the manifests under test are the shipped ones with one defect patched in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from deploy.k8s import validate
from deploy.k8s.validate import K8S_ROOT, OVERLAYS, validate_overlay

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("overlay", sorted(p.name for p in OVERLAYS.iterdir() if p.is_dir()))
def test_shipped_overlays_validate(overlay: str) -> None:
    report = validate_overlay(OVERLAYS / overlay)
    assert report.errors == []
    assert sum(report.kinds.values()) >= 20  # the services, their config and monitoring


def test_main_reports_every_kind_and_says_strimzi_was_not_schema_checked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert validate.main([str(OVERLAYS / "production")]) == 0
    out = capsys.readouterr().out
    assert "KafkaTopic" in out and "NOT Strimzi's CRDs" in out
    assert "CRD github.com/kedacore/keda/v2@" in out and "Kubernetes 1.33" in out


def _broken(tmp_path: Path, target: dict[str, str], ops: list[dict[str, object]]) -> Path:
    """An overlay of the production one with a JSON patch applied to one object."""
    overlay = tmp_path / "broken"
    overlay.mkdir()
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # kustomize takes only relative paths to other kustomizations
        "resources": [os.path.relpath(OVERLAYS / "production", overlay)],
        "patches": [{"target": target, "patch": json.dumps(ops)}],
    }
    (overlay / "kustomization.yaml").write_text(json.dumps(kustomization), encoding="utf-8")
    return overlay


WORKER = {"kind": "Deployment", "name": "ctriage-worker"}
SCALER = {"kind": "ScaledObject", "name": "ctriage-worker"}

BROKEN = [
    # a misspelt field of a core object (strict Kubernetes schema)
    (WORKER, [{"op": "add", "path": "/spec/template/spec/containers/0/imagePullPolicyy",
               "value": "Always"}], "imagePullPolicyy"),
    # a wrong type in a KEDA object (the KEDA CRD's schema)
    (SCALER, [{"op": "replace", "path": "/spec/pollingInterval", "value": "often"}],
     "is not of type 'integer'"),
    # more replicas than partitions
    (SCALER, [{"op": "replace", "path": "/spec/maxReplicaCount", "value": 48}],
     "more than the 12 partitions"),
    # an unknown field in a prometheus-operator object
    ({"kind": "PodMonitor", "name": "ctriage-worker"},
     [{"op": "add", "path": "/spec/podMetricsEndpoint", "value": []}], "podMetricsEndpoint"),
    # an alert rule edited by hand instead of in deploy/prometheus.py
    ({"kind": "PrometheusRule", "name": "ctriage"},
     [{"op": "replace", "path": "/spec/groups/0/rules/0/expr", "value": "vector(1)"}],
     "differs from deploy.prometheus.ALERT_RULES"),
    # a CloudNativePG field of the wrong type
    ({"kind": "Cluster", "name": "ctriage-pg"},
     [{"op": "replace", "path": "/spec/instances", "value": "three"}], "instances"),
    # a Strimzi topic without partitions (our minimal schema)
    ({"kind": "KafkaTopic", "name": "ct.studies"},
     [{"op": "remove", "path": "/spec/partitions"}], "'partitions' is a required property"),
    # a Service whose port no pod has
    ({"kind": "Service", "name": "ctriage-fhir-endpoint"},
     [{"op": "replace", "path": "/spec/ports/0/targetPort", "value": "https"}], "no port"),
    # a pod using a claim that is not rendered
    (WORKER, [{"op": "replace", "path": "/spec/template/spec/volumes/0/persistentVolumeClaim/"
               "claimName", "value": "studies-typo"}], "studies-typo"),
]  # fmt: skip


@pytest.mark.parametrize(("target", "ops", "expected"), BROKEN, ids=lambda v: str(v)[:40])
def test_a_broken_manifest_fails_for_its_reason(
    tmp_path: Path, target: dict[str, str], ops: list[dict[str, object]], expected: str
) -> None:
    report = validate_overlay(_broken(tmp_path, target, ops))
    assert report.errors, "the defect went through"
    assert any(expected in error for error in report.errors), report.errors


def test_main_exits_non_zero_on_a_broken_overlay(tmp_path: Path) -> None:
    broken = _broken(tmp_path, SCALER, [{"op": "replace", "path": "/spec/maxReplicaCount",
                                         "value": 99}])  # fmt: skip
    assert validate.main([str(broken)]) == 1
    assert K8S_ROOT.is_dir()
