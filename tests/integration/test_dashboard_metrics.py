"""The Triton series the pipeline health dashboard reads exist on a real Triton server.

The dashboard declares the series of exporters other than the worker in
``dashboards.pipeline_health.EXTERNAL_METRICS``; the unit tests check every PromQL query against
that list and the worker's registry. Here the Triton entries are checked against what the
session's Triton (``triton_server`` fixture, the model repository of the worker) exports on its
metrics port. GPU series exist only where Triton sees a GPU: they are checked on a GPU machine
and skipped on a CPU one, where such a series truly cannot exist.
"""

from __future__ import annotations

import re
import urllib.request

import pytest

from dashboards.pipeline_health import EXTERNAL_METRICS

pytestmark = pytest.mark.integration


def _exported(metrics_url: str) -> dict[str, set[str]]:
    """Series name -> labels, as Prometheus stores them from a text exposition."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    series: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        # the raw sample names: prometheus_client's parser would add `_total` to counters
        name = re.match(r"[a-zA-Z_:][\w:]*", line)
        assert name, line
        labels = re.findall(r'(\w+)="', line.partition("{")[2].partition("}")[0])
        series.setdefault(name.group(0), set()).update(labels)
    return series


@pytest.mark.parametrize(
    "name", sorted(n for n, m in EXTERNAL_METRICS.items() if m.exporter.startswith("triton"))
)
def test_triton_exports_the_series_the_dashboard_reads(triton_server, name: str) -> None:  # type: ignore[no-untyped-def]
    exported = _exported(triton_server.metrics_url)
    declared = EXTERNAL_METRICS[name]
    if declared.exporter == "triton-gpu" and not any(n.startswith("nv_gpu_") for n in exported):
        pytest.skip("Triton sees no GPU on this machine: nv_gpu_* series cannot exist here")
    assert name in exported, f"Triton exports no {name}; it has {sorted(exported)}"
    assert exported[name] <= declared.labels | {"le"}, (
        f"{name}: Triton labels {exported[name]}, declared {declared.labels}"
    )
    assert exported[name] >= declared.labels - {"reason"} or name.startswith("nv_gpu_"), name
