"""The PrometheusRule of the Kubernetes deployment, generated from the local alert rules.

``python -m deploy.k8s.rules > deploy/k8s/base/prometheus-rule.yaml`` rewrites the manifest from
:data:`deploy.prometheus.ALERT_RULES`, so the cluster's Prometheus and the local one
(``ctriage services up``) alert on the same expressions; the validator refuses a stale file.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from deploy.prometheus import ALERT_RULES

HEADER = """\
# The alert rules of deploy/prometheus.py (ALERT_RULES) as a PrometheusRule. Generated: rewrite
# with `python -m deploy.k8s.rules > deploy/k8s/base/prometheus-rule.yaml`
# (`python -m deploy.k8s.validate` fails while this file differs from ALERT_RULES).
"""


def prometheus_rule() -> dict[str, Any]:
    """The PrometheusRule object carrying :data:`ALERT_RULES` unchanged."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "ctriage", "labels": {"release": "kube-prometheus-stack"}},
        "spec": ALERT_RULES,
    }


def render() -> str:
    """The manifest's text: header comment and the object as block YAML."""
    body = yaml.safe_dump(prometheus_rule(), sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


def main() -> None:
    """Write the manifest to standard output."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
