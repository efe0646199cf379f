"""The "ctriage — pipeline health" dashboard: lag, throughput, dead letters, Triton, memory.

For whoever runs the pipeline. Most panels query Prometheus through ``$prometheus``; one table
reads the store's ``dead_letters`` (reason codes and counts only, never payloads). Metrics come
from four registries, each named in :data:`EXTERNAL_METRICS` or :mod:`streams.metrics`:

- the ctriage workers' and ingress services' ``/metrics`` (:mod:`streams.metrics`, names only:
  no import here), the process collector's ``process_resident_memory_bytes`` included (the
  memory of each ctriage process, on Kubernetes and on a single host alike); the workers are the
  scrape job ``ctriage``, each ingress service its own (``ctriage-fhir-endpoint`` ...);
- Triton's metrics port (``nv_inference_*``, ``nv_gpu_*``), scraped by the Triton PodMonitor;
- KEDA's operator (``keda_scaler_metrics_value``: the consumer lag its Kafka scaler reads for
  the worker's ScaledObject, the number that drives scaling);
- the kubelet's cAdvisor (``container_memory_working_set_bytes``), scraped by any
  kube-prometheus-stack: the containers' working set, Triton's included (no series on a single
  host, where compose runs no cAdvisor).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dashboard_builder
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    BigValueTextMode,
    LegendDisplayMode,
    LegendPlacement,
)

from dashboards.datasources import (
    PROMETHEUS_DATASOURCE,
    STORE_DATASOURCE,
    SqlFormatValues,
    datasource_variables,
    prometheus_expr,
    store_sql,
)

UID = "ctriage-pipeline-health"
TITLE = "ctriage — pipeline health"
#: The worker's KEDA ScaledObject (deploy/k8s/base/worker/scaledobject.yaml).
SCALED_OBJECT = "ctriage-worker"
#: Container names of the ctriage pods (deploy/k8s/base): the memory panel's selector.
CONTAINERS = ("worker", "fhir-endpoint", "dicom-receiver", "dicomweb-poller", "admin-api", "triton")


@dataclass(frozen=True)
class ExternalMetric:
    """A series another program exports: who, and the labels a query may use."""

    exporter: str
    labels: frozenset[str]


_TRITON = frozenset({"model", "version"})
_KEDA = frozenset({"namespace", "metric", "scaledObject", "scaler", "triggerIndex", "type"})

#: Series of other exporters this dashboard reads (name -> exporter, labels). The tests check
#: Triton's against a running server and KEDA's against its pinned source; cAdvisor's are
#: taken from its documentation (no kubelet runs here).
EXTERNAL_METRICS: dict[str, ExternalMetric] = {
    "nv_inference_request_success": ExternalMetric("triton", _TRITON),
    "nv_inference_request_failure": ExternalMetric("triton", _TRITON | {"reason"}),
    "nv_inference_queue_duration_us": ExternalMetric("triton", _TRITON),
    "nv_inference_compute_infer_duration_us": ExternalMetric("triton", _TRITON),
    "nv_gpu_memory_used_bytes": ExternalMetric("triton-gpu", frozenset({"gpu_uuid"})),
    "keda_scaler_metrics_value": ExternalMetric("keda", _KEDA),
    "container_memory_working_set_bytes": ExternalMetric(
        "cadvisor", frozenset({"namespace", "pod", "container", "image", "name", "id"})
    ),
}

CONSUMER_LAG = (
    f'sum by (scaledObject, metric) (keda_scaler_metrics_value{{scaledObject="{SCALED_OBJECT}"}})'
)
#: The workers' scrape job (the ingress services export the same gauge, always 0).
WORKER_JOB = "ctriage"
WORKERS = f'count(ctriage_assigned_partitions{{job="{WORKER_JOB}"}})'
PARTITIONS = "sum(ctriage_assigned_partitions)"
PENDING_FHIR = "sum(ctriage_pending_fhir_resources)"
DEAD_LETTERS_LAST_HOUR = "sum(increase(ctriage_dead_letters_total[1h]))"
THROUGHPUT = "sum by (stage) (rate(ctriage_messages_total[$__rate_interval]))"
INGESTED = "sum by (source) (rate(ctriage_ingested_studies_total[$__rate_interval]))"
DEAD_LETTERS = "sum by (stage, reason) (increase(ctriage_dead_letters_total[1h]))"
_PER_REQUEST = (
    "sum by (model) (rate({metric}[$__rate_interval])) / 1000"
    " / sum by (model) (rate(nv_inference_request_success[$__rate_interval]))"
)
TRITON_QUEUE_MS = _PER_REQUEST.format(metric="nv_inference_queue_duration_us")
TRITON_COMPUTE_MS = _PER_REQUEST.format(metric="nv_inference_compute_infer_duration_us")
TRITON_FAILURES = "sum by (model) (rate(nv_inference_request_failure[$__rate_interval]))"
CONTAINER_MEMORY = (
    "sum by (pod, container) (container_memory_working_set_bytes"
    f'{{container=~"{"|".join(CONTAINERS)}"}})'
)
GPU_MEMORY = "sum by (gpu_uuid) (nv_gpu_memory_used_bytes)"
#: Resident memory of each ctriage process (the process collector of streams.metrics).
PROCESS_MEMORY = 'sum by (job, instance) (process_resident_memory_bytes{job=~"ctriage.*"})'

DEAD_LETTERS_SQL = """\
SELECT
  topic AS "topic",
  stage AS "stage",
  reason_code AS "reason",
  count(*) AS "dead letters",
  max(at) AS "latest"
FROM dead_letters
WHERE $__timeFilter(at)
GROUP BY topic, stage, reason_code
ORDER BY "dead letters" DESC"""


def _legend() -> common_builder.VizLegendOptions:
    return (
        common_builder.VizLegendOptions()
        .display_mode(LegendDisplayMode.LIST)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def _stat(panel_id: int, title: str, description: str, expr: str) -> stat.Panel:
    return (
        stat.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(PROMETHEUS_DATASOURCE)
        .with_target(prometheus_expr(expr, title, "A"))
        .span(6)
        .height(4)
        .graph_mode(BigValueGraphMode.AREA)
        .color_mode(BigValueColorMode.VALUE)
        .text_mode(BigValueTextMode.VALUE)
        .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .decimals(0)
    )


def _series(
    panel_id: int, title: str, description: str, targets: list[tuple[str, str]], unit: str
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(PROMETHEUS_DATASOURCE)
        .span(12)
        .height(8)
        .unit(unit)
        .legend(_legend())
    )
    for ref_id, (expr, legend) in zip("ABCD", targets, strict=False):
        panel = panel.with_target(prometheus_expr(expr, legend, ref_id))
    return panel


def _panels() -> list[Any]:
    return [
        _stat(1, "Workers", "Workers exporting metrics (ctriage_assigned_partitions).", WORKERS),
        _stat(2, "Partitions assigned", "Partitions owned by the workers together.", PARTITIONS),
        _stat(3, "FHIR resources pending", "Resources held until their patient is known.",
              PENDING_FHIR),
        _stat(11, "Dead letters, last hour", "Messages dead-lettered by any stage in the last "
              "hour (the CtriageDeadLetters alert fires on any).", DEAD_LETTERS_LAST_HOUR),
        _series(4, "Consumer lag (worker group, as KEDA reads it)",
                "Messages behind in the worker's consumer group: the value KEDA's Kafka scaler "
                "computes for the ScaledObject and scales the workers on (one replica at most "
                "per partition).", [(CONSUMER_LAG, "{{metric}}")], "short"),
        _series(5, "Throughput", "Messages processed per second by stage, and studies "
                "announced per second by ingress source.",
                [(THROUGHPUT, "{{stage}}"), (INGESTED, "ingress {{source}}")], "ops"),
        _series(6, "Dead letters per hour by reason",
                "Messages sent to a dead-letter topic in the last hour, by stage and reason "
                "code (worker metric).", [(DEAD_LETTERS, "{{stage}}: {{reason}}")], "short"),
        _series(7, "Triton queue and compute time per request",
                "Average milliseconds a request waited in Triton's queue and spent computing, "
                "by model.",
                [(TRITON_QUEUE_MS, "queue {{model}}"), (TRITON_COMPUTE_MS, "compute {{model}}")],
                "ms"),
        _series(8, "Triton failed requests", "Failed inference requests per second, by model.",
                [(TRITON_FAILURES, "{{model}}")], "reqps"),
        _series(9, "Memory", "Resident memory of each ctriage process (its process collector), "
                "working set of each ctriage container (cAdvisor, Kubernetes only) and GPU "
                "memory used on Triton's GPUs.",
                [(PROCESS_MEMORY, "process {{job}} {{instance}}"),
                 (CONTAINER_MEMORY, "{{pod}}/{{container}}"), (GPU_MEMORY, "GPU {{gpu_uuid}}")],
                "bytes"),
        table.Panel()
        .id(10)
        .title("Dead letters in the store by reason")
        .description("Dead letters recorded in the time range by topic, stage and reason code "
                     "(the payloads stay in the store and on the DLQ topics).")
        .datasource(STORE_DATASOURCE)
        .with_target(store_sql(DEAD_LETTERS_SQL, SqlFormatValues.TABLE))
        .span(12)
        .height(8)
        .show_header(True),
    ]  # fmt: skip


def build_pipeline_health() -> dict[str, Any]:
    """The dashboard's JSON model (what Grafana's ``/api/dashboards/db`` takes as ``dashboard``)."""
    board = (
        dashboard_builder.Dashboard(TITLE)
        .uid(UID)
        .description(
            "Health of the ctriage pipeline: consumer lag, throughput, dead letters, Triton "
            "queue and compute time, memory."
        )
        .tags(["ctriage", "operations"])
        .time("now-6h", "now")
        .refresh("30s")
        .variables(list(datasource_variables()))
    )
    for panel in _panels():
        board = board.with_panel(panel)
    model: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return model
