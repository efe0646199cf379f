"""Every dashboard is built by a test: valid JSON, stable uid, datasources, queries, layout.

No live Grafana here (Grafana cannot be installed on this machine): the SQL of every panel runs on
the real store schema in SQLite, PromQL metric names are checked against the worker's registry (or,
for Triton, KEDA and cAdvisor series, against the dashboards' declared external metrics, which
tests/integration and tests/unit/deploy check against a real Triton and KEDA's pinned source), and
the SDK's own ``Dashboard.from_json`` loads the model back, standing in for Grafana's schema.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import prometheus
from grafana_foundation_sdk.models.dashboard import Dashboard
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import Engine

from dashboards import store
from dashboards.catalog import DASHBOARDS
from dashboards.datasources import POSTGRES_PLUGIN_ID, SqlDataquery, sql_variant_config
from dashboards.ed_triage import build_ed_triage
from dashboards.pipeline_health import EXTERNAL_METRICS
from streams import metrics
from streams.admin.policy_log import audit_record
from streams.agents.sinks import write_audit, write_dead_letter, write_forecast
from streams.dlq import build_dead_letter
from streams.mapping import forecast_record
from streams.records import UnitForecastRecord
from triage.alerts.policy import AlertPolicy
from triage.alerts.thresholds import ThresholdChange, apply_change
from triage.capacity.unit_forecast import forecast_from_census

pytestmark = pytest.mark.unit

NOW = datetime(2020, 11, 2, 8, tzinfo=UTC)
MODELS = {name: build() for name, build in DASHBOARDS.items()}
# Columns a dashboard must never show, whatever the store one day holds.
IDENTIFYING = ("name", "birth", "address", "phone", "mrn")


def forecast_of(*args: Any, **kwargs: Any) -> UnitForecastRecord:
    """The capacity agent's record of a unit forecast (:func:`forecast_from_census`)."""
    return forecast_record(forecast_from_census(*args, **kwargs), issued_at=NOW.timestamp())


def _panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in model["panels"] if p["type"] != "row"]


def _targets(kind: str) -> list[tuple[str, dict[str, Any]]]:
    key = {"sql": "rawSql", "promql": "expr"}[kind]
    return [
        (f"{name}/{panel['title']}/{target['refId']}", target)
        for name, model in MODELS.items()
        for panel in _panels(model)
        for target in panel["targets"]
        if key in target
    ]


def test_ed_triage_is_registered_with_its_stable_uid_and_title() -> None:
    model = MODELS["ed-triage"]
    assert model["uid"] == "ctriage-ed-triage"
    assert model["title"] == "ctriage — ED triage"
    assert build_ed_triage() == model  # deterministic: a rebuild is the same dashboard


def test_every_user_has_a_dashboard() -> None:
    # emergency physicians, bed managers, administrators, whoever runs the pipeline
    assert {m["uid"] for m in MODELS.values()} == {
        "ctriage-ed-triage", "ctriage-icu-forecast", "ctriage-admin", "ctriage-pipeline-health"
    }  # fmt: skip
    for name, build in DASHBOARDS.items():
        assert build() == MODELS[name], f"{name} is not deterministic"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_model_is_plain_json_with_a_schema_version(name: str) -> None:
    model = MODELS[name]
    assert json.loads(json.dumps(model)) == model
    assert isinstance(model["schemaVersion"], int) and model["schemaVersion"] > 0
    assert "id" not in model  # uid is the identity; Grafana assigns ids


def test_uids_are_unique_and_grafana_sized() -> None:
    uids = [m["uid"] for m in MODELS.values()]
    assert len(set(uids)) == len(uids)
    assert all(re.fullmatch(r"[a-z0-9-]{1,40}", uid) for uid in uids)


def _kept_in(original: Any, loaded: Any, where: str = "") -> None:
    """Every value of ``original`` is in ``loaded`` (which may add the SDK's defaults)."""
    if isinstance(original, dict):
        assert isinstance(loaded, dict), where
        for key, value in original.items():
            assert key in loaded, f"{where}.{key} was dropped"
            _kept_in(value, loaded[key], f"{where}.{key}")
    elif isinstance(original, list):
        assert isinstance(loaded, list) and len(loaded) == len(original), where
        for i, (a, b) in enumerate(zip(original, loaded, strict=True)):
            _kept_in(a, b, f"{where}[{i}]")
    else:
        assert original == loaded, f"{where}: {original!r} became {loaded!r}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_sdk_loads_the_model_back_without_losing_anything(name: str) -> None:
    register_default_plugins()
    cogruntime.register_dataquery_variant(sql_variant_config())
    loaded = Dashboard.from_json(MODELS[name])
    again = json.loads(json.dumps(loaded, cls=JSONEncoder))
    # Loading fills in panel field-config defaults (e.g. histogram line width): allowed.
    _kept_in(MODELS[name], again)
    assert json.loads(json.dumps(Dashboard.from_json(again), cls=JSONEncoder)) == again
    targets = [t for p in loaded.panels or [] for t in getattr(p, "targets", None) or []]
    assert targets and all(isinstance(t, SqlDataquery | prometheus.Dataquery) for t in targets), (
        "every target loads as a typed query, none as UnknownDataquery"
    )


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_reaches_its_datasource_through_a_variable(name: str) -> None:
    model = MODELS[name]
    variables = {
        v["name"]: v["query"] for v in model["templating"]["list"] if v["type"] == "datasource"
    }
    assert sorted(variables.values()) == sorted([POSTGRES_PLUGIN_ID, "prometheus"])
    for panel in _panels(model):
        ref = panel["datasource"]
        variable = re.fullmatch(r"\$\{(\w+)\}", ref["uid"])
        assert variable, f"{panel['title']}: datasource uid {ref['uid']!r} is not a variable"
        assert variables[variable.group(1)] == ref["type"], panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == ref, panel["title"]
            query = target.get("rawSql") or target.get("expr")
            assert query and query.strip(), f"{panel['title']}/{target['refId']} is empty"
            if ref["type"] == POSTGRES_PLUGIN_ID:
                assert target["rawQuery"] is True and target["editorMode"] == "code"
                assert target["format"] in ("table", "time_series")


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_fit_the_grid_without_overlapping(name: str) -> None:
    boxes = [(p["title"], p["gridPos"]) for p in MODELS[name]["panels"]]
    for title, g in boxes:
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0, title
        assert g["x"] + g["w"] <= 24, f"{title} runs past the 24-column grid"
    for i, (a_title, a) in enumerate(boxes):
        for b_title, b in boxes[i + 1 :]:
            apart = (
                a["x"] + a["w"] <= b["x"]
                or b["x"] + b["w"] <= a["x"]
                or a["y"] + a["h"] <= b["y"]
                or b["y"] + b["h"] <= a["y"]
            )
            assert apart, f"{a_title} overlaps {b_title}"
    ids = [p["id"] for p in MODELS[name]["panels"]]
    assert len(set(ids)) == len(ids)


# Grafana's PostgreSQL macros, expanded the way SQLite can run them (no time range here), and
# the dashboards' template variables set to the census that ``filled_store`` holds.
MACROS = [
    (re.compile(r"\$__timeFilter\(([\w.]+)\)"), r"(\1 IS NOT NULL)"),
    (re.compile(r"\$__timeGroupAlias\((\w+)\s*,[^)]*\)"), r"\1 AS time"),
    (re.compile(r"\$__timeFrom\(\)"), "'2000-01-01 00:00:00'"),
    (re.compile(r"\$__timeTo\(\)"), "'2100-01-01 00:00:00'"),
    (re.compile(r"\$hospital\b"), "h1"),
    (re.compile(r"\$unit\b"), "icu-a"),
]


def _expand_macros(sql: str) -> str:
    for pattern, replacement in MACROS:
        sql = pattern.sub(replacement, sql)
    assert "$" not in sql, f"a Grafana macro or variable this test cannot expand: {sql}"
    return sql


@pytest.fixture(scope="module")
def filled_store() -> Engine:
    """The real store schema in memory, one row in each table the dashboards read."""
    engine = store.make_engine("sqlite://")
    store.create_schema(engine)
    common = {
        "study_uid": "1.2.3",
        "patient_pseudonym": "k1-abc",
        "probability": 0.82,
        "level": "high",
        "model_version": "m1",
        "threshold_version": "t1",
        "lesion_percent": 31.5,
        "top_features": [{"feature": "spo2_pct", "value": 88.0}],
    }
    with engine.begin() as conn:
        store.upsert_risk(
            conn,
            {
                **common,
                "risk_id": "r1",
                "completeness": "complete",
                "scored_at": NOW,
                "prior_study_uid": "1.2.2",
                "lesion_from_prior_percent": 12.0,
                "lesion_change_prior_points": 19.5,
                "lesion_change_prior_per_day": 6.5,
            },
        )
        store.upsert_alert(conn, {**common, "alert_id": "a1", "raised_at": NOW, "hospital": "h1"})
        store.upsert_alert(  # a worsening alert (issue 16) for the worsening panel
            conn,
            {**common, "alert_id": "w1", "raised_at": NOW, "hospital": "h1", "kind": "worsening"},
        )
    change = ThresholdChange("h1", {"high": 0.3}, reason="fewer alerts", changed_by="ana")
    applied = apply_change(AlertPolicy.single(0.2, "t1"), change)
    assert applied is not None
    write_audit(engine, audit_record(applied, "threshold-admin", "admin-api", NOW.timestamp()))
    letter = build_dead_letter(
        stage="quantify", reason="invalid_volume", error="no slices", source_topic="ct.studies",
        source_partition=0, source_offset=7, key=None, payload=b"{}",
    )  # fmt: skip
    write_dead_letter(engine, "ct.studies.dlq", letter)
    census = {
        "occupants": {"p1": (NOW - timedelta(days=2)).isoformat()},
        "pipeline": {"p2": [0.6, NOW.isoformat()]},
        "ventilated": {"p1": (NOW - timedelta(days=1)).isoformat()},
        "at_risk": {"p2": [0.6, NOW.isoformat()]},
        "clock": NOW.isoformat(),
    }
    forecast = forecast_of("h1", census, capacity=4, unit="icu-a", ventilators=2)
    write_forecast(engine, forecast)  # the sink's own rows: ICU beds and ventilators
    return engine


@pytest.mark.parametrize(("where", "target"), _targets("sql"), ids=lambda v: str(v)[:60])
def test_sql_runs_on_the_real_store_schema(
    filled_store: Engine, where: str, target: dict[str, Any]
) -> None:
    with filled_store.connect() as conn:
        result = conn.exec_driver_sql(_expand_macros(target["rawSql"]))
        columns = list(result.keys())
        rows = result.fetchall()
    assert rows, f"{where} returned nothing from a store holding one alert and one risk"
    assert not [c for c in columns if any(word in c.lower() for word in IDENTIFYING)], where
    if target["format"] == "time_series":
        assert "time" in columns, f"{where}: a time series needs a `time` column"


def test_store_holds_no_identifying_columns() -> None:
    columns = [c.name for table in store.metadata.tables.values() for c in table.columns]
    assert not [c for c in columns if any(word in c for word in IDENTIFYING)]


#: Labels Prometheus attaches to every series it scrapes (the target's job and address).
TARGET_LABELS = frozenset({"job", "instance"})
#: Series each metric type exposes (prometheus_client's exposition; ``_created`` left out).
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "info": ("_info",),
}


def _exported_metrics() -> dict[str, set[str]]:
    """Series names the worker exports -> the labels a query may group by.

    Every family of the worker's registry, as ``REGISTRY.collect()`` yields it: ctriage's own
    metrics and the process collector's (``process_resident_memory_bytes`` ...). A labelled
    metric has no sample until a child exists, so its label names come from the metric object
    (``_labelnames`` is private in prometheus_client, but it is the only place they live before
    a child exists); samples add what the collectors report.
    """
    declared = {
        m._name: set(m._labelnames)
        for m in vars(metrics).values()
        if isinstance(m, Counter | Gauge | Histogram)
    }
    exported: dict[str, set[str]] = {}
    for family in metrics.REGISTRY.collect():
        labels = declared.get(family.name, set()) | TARGET_LABELS
        labels |= {name for sample in family.samples for name in sample.labels}
        for suffix in _SUFFIXES.get(family.type, ("",)):
            extra = {"le"} if suffix == "_bucket" else set()
            exported[family.name + suffix] = labels | extra
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                exported.setdefault(sample.name, set()).update(labels, sample.labels)
    return exported


def test_every_family_of_the_worker_registry_is_exported() -> None:
    exported = _exported_metrics()
    families = {f.name for f in metrics.REGISTRY.collect()}
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total"} <= set(exported)
    assert all(any(n.startswith(f) for n in exported) for f in families)
    assert exported["ctriage_stage_seconds_bucket"] == {"stage", "le"} | TARGET_LABELS


def _registries() -> dict[str, set[str]]:
    """The worker's series and the other exporters' series the dashboards declare."""
    external = {name: set(m.labels) for name, m in EXTERNAL_METRICS.items()}
    assert not set(external) & set(_exported_metrics()), "a worker metric declared external"
    return _exported_metrics() | external


_PROMQL_WORDS = {
    "sum", "count", "avg", "min", "max", "rate", "increase", "histogram_quantile", "by",
    "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
}  # fmt: skip


def promql_metric_names(expr: str) -> list[str]:
    """Metric names in a PromQL expression (not functions, keywords, labels or strings)."""
    bare = re.sub(r'"[^"]*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", bare)  # matchers, ranges
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", bare)  # grouping labels
    tokens = re.findall(r"(?<![\w$.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", bare)
    return [t for t in tokens if t not in _PROMQL_WORDS]


def test_promql_metric_names_are_found_and_labels_are_not() -> None:
    expr = 'sum by (le, stage) (rate(ctriage_stage_seconds_bucket{stage="x"}[5m])) / up'
    assert promql_metric_names(expr) == ["ctriage_stage_seconds_bucket", "up"]


@pytest.mark.parametrize(("where", "target"), _targets("promql"), ids=lambda v: str(v)[:60])
def test_promql_uses_metrics_and_labels_the_registries_export(
    where: str, target: dict[str, Any]
) -> None:
    exported = _registries()
    expr = target["expr"]
    names = promql_metric_names(expr)
    assert names, f"{where} queries no metric"
    grouped = {
        label.strip()
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
        for label in group.split(",")
        if label.strip()
    }
    matched = set(re.findall(r"(\w+)\s*=~?", "".join(re.findall(r"\{[^}]*\}", expr))))
    legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
    for metric_name in names:
        assert metric_name in exported, f"{where}: {metric_name} is in no registry"
    # a label must exist on every metric it is used with (one-metric expressions, or a by()
    # over a ratio of two metrics that share it)
    labels = set.intersection(*(exported[n] for n in names))
    assert grouped <= labels, f"{where}: grouped by {grouped - labels}, not exported"
    assert legend <= labels, f"{where}: legend labels {legend - labels}"
    assert matched <= set.union(*(exported[n] for n in names)), f"{where}: matcher {matched}"


def test_a_query_on_an_unknown_metric_or_label_fails_the_check() -> None:
    unknown = {"expr": "sum by (stage) (rate(ctriage_nonexistent_total[5m]))"}
    with pytest.raises(AssertionError, match="in no registry"):
        test_promql_uses_metrics_and_labels_the_registries_export("probe", unknown)
    wrong_label = {"expr": "sum by (model) (rate(ctriage_messages_total[5m]))"}
    with pytest.raises(AssertionError, match="grouped by"):
        test_promql_uses_metrics_and_labels_the_registries_export("probe", wrong_label)


def test_every_risk_level_has_a_colour_in_the_alert_table() -> None:
    from dashboards.ed_triage import LEVEL_COLOURS
    from triage.alerts.policy import RiskLevelValues

    assert set(LEVEL_COLOURS) == {level.value for level in RiskLevelValues}
    assert len(set(LEVEL_COLOURS.values())) == len(LEVEL_COLOURS)
