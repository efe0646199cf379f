"""The demo: a synthetic cohort replayed through the real services, its outputs collected.

``run`` starts the services and the worker and replays a cohort, ``collector`` reads the output
topics, ``summary`` folds what came out into numbers, ``screen`` draws them (for ``ctriage demo``,
in :mod:`streams.cli.demo`). Integration tests and benchmarks reuse the same pieces.
"""

from streams.demo.collector import OutputCollector
from streams.demo.run import (
    DemoError,
    DemoOptions,
    MonitoringSnapshot,
    WorkerProcess,
    cohort_for,
    demo_settings,
    monitoring_snapshot,
    run_pipeline,
    start_services,
    worker_env,
)
from streams.demo.summary import (
    LatencySummary,
    ReplayOutcome,
    SyntheticMatch,
    latency_summary,
    simulated_ventilation,
    synthetic_match,
)

__all__ = [
    "DemoError",
    "DemoOptions",
    "LatencySummary",
    "MonitoringSnapshot",
    "OutputCollector",
    "ReplayOutcome",
    "SyntheticMatch",
    "WorkerProcess",
    "cohort_for",
    "demo_settings",
    "latency_summary",
    "monitoring_snapshot",
    "run_pipeline",
    "simulated_ventilation",
    "start_services",
    "synthetic_match",
    "worker_env",
]
