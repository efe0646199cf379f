"""The KEDA series of the pipeline health dashboard is the one KEDA's pinned source defines.

``keda_scaler_metrics_value`` is read from the KEDA module pinned for the CRDs
(``deploy.k8s.schemas.KEDA_MODULE``, fetched with ``go mod download`` like ``make lint`` does):
the gauge's namespace, subsystem, name and label names must be what the dashboard declares.
"""

from __future__ import annotations

import re
import zipfile

import pytest
import yaml

from dashboards.pipeline_health import CONSUMER_LAG, EXTERNAL_METRICS, SCALED_OBJECT
from deploy.k8s.schemas import KEDA_MODULE, module_zip
from deploy.k8s.validate import K8S_ROOT

pytestmark = pytest.mark.unit

SOURCE = "pkg/metricscollector/prommetrics.go"


def _keda_file(path: str) -> str:
    module, version = KEDA_MODULE
    with zipfile.ZipFile(module_zip(module, version)) as archive:
        return archive.read(f"{module}@{version}/{path}").decode()


@pytest.fixture(scope="module")
def keda_metrics_source() -> str:
    return _keda_file(SOURCE)


def test_keda_defines_the_lag_gauge_with_the_declared_labels(keda_metrics_source: str) -> None:
    gauge = re.search(
        r"scalerMetricsValue\s*=\s*prometheus\.NewGaugeVec\(\s*prometheus\.GaugeOpts\{(.*?)\},"
        r"\s*(\w+),",
        keda_metrics_source,
        re.S,
    )
    assert gauge, f"no scalerMetricsValue gauge in {SOURCE}"
    opts = dict(re.findall(r"(Namespace|Subsystem|Name):\s*\"?([\w.]+)\"?", gauge.group(1)))
    assert opts["Namespace"] == "DefaultPromMetricsNamespace"
    constant = re.search(
        r'DefaultPromMetricsNamespace\s*=\s*"(\w+)"',
        _keda_file("pkg/metricscollector/metricscollectors.go"),
    )
    assert constant
    namespace = constant.group(1)
    assert f"{namespace}_{opts['Subsystem']}_{opts['Name']}" == "keda_scaler_metrics_value"
    labels = re.search(rf"{gauge.group(2)}\s*=\s*\[\]string\{{([^}}]*)\}}", keda_metrics_source)
    assert labels
    assert set(re.findall(r'"(\w+)"', labels.group(1))) == set(
        EXTERNAL_METRICS["keda_scaler_metrics_value"].labels
    )


def test_the_lag_panel_reads_the_worker_scaled_object() -> None:
    assert f'scaledObject="{SCALED_OBJECT}"' in CONSUMER_LAG
    manifests = yaml.safe_load_all((K8S_ROOT / "base" / "worker-scaling.yaml").read_text())
    scaled = [m["metadata"]["name"] for m in manifests if m["kind"] == "ScaledObject"]
    assert scaled == [SCALED_OBJECT]
