"""Prometheus metrics of the worker and the ingress services (scraped from their ``/metrics``).

The registry also holds the process collector (``process_resident_memory_bytes``,
``process_cpu_seconds_total``, ``process_open_fds`` ...): memory and CPU of the process itself,
where no container runtime reports them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
PROCESS = ProcessCollector(registry=REGISTRY)

INGRESS_REFUSALS = Counter(
    "ctriage_ingress_refusals",
    "Requests and associations refused at an ingress before any data was read, by source "
    "(fhir-http, dicom-cstore) and reason (missing_token, invalid_token, expired_token, "
    "insufficient_scope, unknown_calling_ae, unknown_calling_host).",
    ["source", "reason"],
    registry=REGISTRY,
)
CONSUMER_REFUSED_ACKS = Counter(
    "ctriage_consumer_refused_acks",
    "Acknowledgements refused to records a stream skipped (a rebalance had begun, or the record "
    "came from an earlier generation): they come again after the rebalance instead of being "
    "committed unprocessed (streams/faust_consumer.py).",
    ["reason"],
    registry=REGISTRY,
)

MESSAGES = Counter(
    "ctriage_messages",
    "Messages processed successfully, by stage.",
    ["stage"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "ctriage_dead_letters",
    "Messages sent to a dead-letter topic, by stage and reason code.",
    ["stage", "reason"],
    registry=REGISTRY,
)
CONSUMER_RESUMED = Counter(
    "ctriage_consumer_resumed_partitions",
    "Stream partitions with records waiting that Faust had stopped fetching outside a "
    "rebalance or recovery, resumed by the consumer's watchdog (streams/consumer_watchdogs.py).",
    registry=REGISTRY,
)
CONSUMER_STALLS = Counter(
    "ctriage_consumer_stalled_partitions",
    "Stream partitions fetched again from their committed offset after records waited, none "
    "in flight and every agent queue empty, with nothing committed for 5 s (the consumer's "
    "last-resort liveness check, streams/consumer_watchdogs.py); each may mean records processed "
    "twice, none lost.",
    registry=REGISTRY,
)
CONSUMER_DROPPED = Counter(
    "ctriage_consumer_dropped_batches",
    "Partitions whose records Faust dropped below its read offset (a seek overwritten by a "
    "record fetched before it), sent back to the first one dropped "
    "(streams/faust_consumer.py); each may mean records processed twice, none lost.",
    registry=REGISTRY,
)
CONSUMER_REWINDS = Counter(
    "ctriage_consumer_rewinds",
    "Partitions sent back to their committed offset because a fetched batch was cut short by "
    "a rebalance (streams/faust_consumer.py); each may mean records processed twice, none lost.",
    registry=REGISTRY,
)

ALERTS_SETTLED = Counter(
    "ctriage_alerts_settled",
    "Alerts a stopped worker had written ahead and not remembered, settled by the next worker to "
    "handle the patient: found on triage.alerts (not sent again) or sent then "
    "(streams/agents/alert_log.py).",
    ["outcome"],
    registry=REGISTRY,
)
ALERTS = Counter(
    "ctriage_alerts",
    "Ventilation-risk alerts raised, by level.",
    ["level"],
    registry=REGISTRY,
)
STAGE_SECONDS = Histogram(
    "ctriage_stage_seconds",
    "Time spent per study in each stage.",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
END_TO_END_SECONDS = Histogram(
    "ctriage_end_to_end_seconds",
    "Seconds from a CT event's publication to its risk record.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
ASSIGNED_PARTITIONS = Gauge(
    "ctriage_assigned_partitions",
    "Partitions currently assigned to this worker (0 until the worker has joined its group).",
    registry=REGISTRY,
)
INGESTED_STUDIES = Counter(
    "ctriage_ingested_studies",
    "CT studies announced on ct.studies by an ingress source (folder, C-STORE, DICOMweb).",
    ["source"],
    registry=REGISTRY,
)
NONCONFORMANT_UID_STUDIES = Counter(
    "ctriage_nonconformant_uid_studies",
    "CT studies that arrived with Study, Series or SOP Instance UIDs that are not conformant "
    "DICOM UIDs (UUIDs, leading zeros, over 64 characters): accepted, stored under hashed keys.",
    registry=REGISTRY,
)
RECEIVED_INSTANCES = Counter(
    "ctriage_received_instances",
    "DICOM instances accepted by an ingress source, by source.",
    ["source"],
    registry=REGISTRY,
)
RESCORES = Counter(
    "ctriage_rescores",
    "Risk records re-issued because late clinical data changed a recent study's features.",
    registry=REGISTRY,
)
PENDING_FHIR = Gauge(
    "ctriage_pending_fhir_resources",
    "FHIR resources held on this worker until their patient is known.",
    registry=REGISTRY,
)
CAPACITY_BREACH_PROBABILITY = Gauge(
    "ctriage_capacity_breach_probability",
    "P(demand above capacity on some day of the horizon) in the latest forecast of a unit.",
    ["hospital", "unit", "resource"],
    registry=REGISTRY,
)
CAPACITY_IN_USE = Gauge(
    "ctriage_capacity_in_use",
    "ICU beds or ventilators in use now, per unit (the census of the latest forecast).",
    ["hospital", "unit", "resource"],
    registry=REGISTRY,
)
