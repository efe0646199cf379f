"""The manifests say what the code says: topics, ACLs, settings names, rules and dashboards.

What the schemas cannot know is checked against the code itself: the Strimzi topics against
``streams.topics``, every ``CTRIAGE_*`` variable against ``streams.settings`` (and the rendered
configuration must load), the Grafana dashboards against ``dashboards.catalog``, the
PrometheusRule against ``deploy.prometheus.ALERT_RULES``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.catalog import DASHBOARDS
from dashboards.pipeline_health import CONTAINERS
from deploy.k8s import rules
from deploy.k8s.validate import K8S_ROOT
from streams import kafka_acls, topics
from streams.settings import Settings

pytestmark = pytest.mark.unit

BASE = K8S_ROOT / "base"


def _of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def _config(objects: list[dict[str, Any]]) -> dict[str, str]:
    (config,) = [o for o in _of_kind(objects, "ConfigMap")
                 if o["metadata"]["name"].startswith("ctriage-config")]  # fmt: skip
    return dict(config["data"])


def test_every_topic_is_declared_with_its_partitions_replication_and_policy(
    production: list[dict[str, Any]],
) -> None:
    config = _config(production)
    partitions = int(config["CTRIAGE_KAFKA__PARTITIONS"])
    expected = topics.topic_layout(partitions) | topics.changelog_layout(
        config["CTRIAGE_WORKER__APP_ID"], partitions
    )
    declared = {t["spec"]["topicName"]: t["spec"] for t in _of_kind(production, "KafkaTopic")}
    assert sorted(declared) == sorted(expected)
    retention = {s.name: s.retention_ms for s in topics.ALL_TOPICS}
    for name, (count, compacted) in expected.items():
        spec = declared[name]
        assert spec["partitions"] == count, name
        assert spec["replicas"] == 3 and spec["config"]["min.insync.replicas"] == 2, name
        assert (spec["config"].get("cleanup.policy") == "compact") == compacted, name
        assert spec["config"].get("retention.ms") == retention.get(name), name


def _acls(objects: list[dict[str, Any]]) -> dict[str, list[tuple[str, str, str, set[str]]]]:
    return {
        user["metadata"]["name"]: [
            (a["resource"]["type"], a["resource"]["name"], a["resource"]["patternType"],
             set(a["operations"]))
            for a in user["spec"]["authorization"]["acls"]
        ]
        for user in _of_kind(objects, "KafkaUser")
    }  # fmt: skip


def _can(acls: list[tuple[str, str, str, set[str]]], operation: str, topic: str) -> bool:
    return any(
        kind == "topic" and operation in ops
        and (name == topic if pattern == "literal" else topic.startswith(name))
        for kind, name, pattern, ops in acls
    )  # fmt: skip


def test_each_service_may_touch_only_its_topics(production: list[dict[str, Any]]) -> None:
    acls = _acls(production)
    every = list(topics.topic_layout(1))
    writes = {
        "ctriage-fhir-endpoint": {"fhir.resources", "fhir.resources.dlq"},
        "ctriage-ingest": {"ct.studies", "ct.studies.dlq"},
        "ctriage-admin-api": {"triage.config", "triage.audit"},
        "ctriage-keda": set(),
        "ctriage-worker": set(every),
    }
    reads = writes | {"ctriage-fhir-endpoint": set(), "ctriage-ingest": set()}
    assert set(acls) == set(writes), "one principal per service"
    for user, acl in acls.items():
        assert [t for t in every if _can(acl, "Write", t)] == sorted(writes[user], key=every.index)
        assert {t for t in every if _can(acl, "Read", t)} == reads[user], user
        assert not any(kind == "cluster" or "All" in ops for kind, _, _, ops in acl), user
    # the FHIR ingress cannot read the alerts (the example)
    assert not _can(acls["ctriage-fhir-endpoint"], "Read", "triage.alerts")


def test_the_kafka_users_grant_exactly_the_acl_table(production: list[dict[str, Any]]) -> None:
    """users.yaml and the local secured broker's ACLs come from one table (streams.kafka_acls)."""
    app_id = _config(production)["CTRIAGE_WORKER__APP_ID"]
    table = {
        f"ctriage-{user.removeprefix('ctriage-')}": sorted(
            (a.resource_type, a.name, "prefix" if a.pattern == "prefix" else "literal",
             tuple(sorted(a.operations)))
            for a in acls
        )
        for user, acls in kafka_acls.service_acls(app_id).items()
    }  # fmt: skip
    declared = {
        user: sorted((kind, name, pattern, tuple(sorted(ops))) for kind, name, pattern, ops in acl)
        for user, acl in _acls(production).items()
    }
    assert declared == table


def test_the_worker_and_keda_use_the_worker_group(production: list[dict[str, Any]]) -> None:
    app_id = _config(production)["CTRIAGE_WORKER__APP_ID"]
    acls = _acls(production)
    groups = {u: {n for kind, n, _, _ in a if kind == "group"} for u, a in acls.items()}
    assert groups["ctriage-worker"] == groups["ctriage-keda"] == {app_id}
    assert all(not g for u, g in groups.items() if u not in ("ctriage-worker", "ctriage-keda"))
    (scaler,) = _of_kind(production, "ScaledObject")
    assert scaler["spec"]["triggers"][0]["metadata"]["consumerGroup"] == app_id


@pytest.mark.parametrize("overlay", ["production", "external-services"])
def test_the_workers_session_timeout_is_one_the_brokers_accept(
    overlay: str, request: pytest.FixtureRequest
) -> None:
    objects = request.getfixturevalue(overlay.replace("-", "_"))
    session_ms = 1000 * float(_config(objects).get("CTRIAGE_WORKER__SESSION_TIMEOUT_S", "6"))
    kafkas = _of_kind(objects, "Kafka")
    # a hospital's own cluster (external-services) keeps Kafka's default floor of 6 s
    floor = (
        float(kafkas[0]["spec"]["kafka"]["config"].get("group.min.session.timeout.ms", 6000))
        if kafkas
        else 6000.0
    )
    assert session_ms >= floor, (session_ms, floor)
    heartbeat_ms = 1000 * float(_config(objects).get("CTRIAGE_WORKER__HEARTBEAT_INTERVAL_S", "1.5"))
    assert heartbeat_ms * 3 <= session_ms  # three heartbeats per session, as Kafka advises


def _env_names(objects: list[dict[str, Any]]) -> set[str]:
    names = set(_config(objects))
    for workload in _of_kind(objects, "Deployment"):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            names |= {e["name"] for e in container.get("env", [])}
    return {n for n in names if n.startswith("CTRIAGE_")}


@pytest.mark.parametrize("overlay", ["production", "external_services"])
def test_every_setting_name_exists_in_streams_settings(
    overlay: str, request: pytest.FixtureRequest
) -> None:
    names = _env_names(request.getfixturevalue(overlay))
    assert len(names) > 20
    for name in names:
        match = re.fullmatch(r"CTRIAGE_([A-Z_]+?)(?:__([A-Z0-9_]+))?", name)
        assert match, name
        section, field = match.group(1).lower(), (match.group(2) or "").lower()
        assert section in Settings.model_fields, f"{name}: no settings section {section}"
        if field:
            model = Settings.model_fields[section].annotation
            assert field in model.model_fields, f"{name}: {section} has no field {field}"  # type: ignore[union-attr]


def test_the_rendered_configuration_loads_as_the_services_read_it(
    production: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _config(production).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CTRIAGE_KAFKA__SASL_USERNAME", "ctriage-worker")
    monkeypatch.setenv("CTRIAGE_KAFKA__SASL_PASSWORD", "from-a-secret")
    settings = Settings()
    assert settings.kafka.bootstrap_servers == "ctriage-kafka-bootstrap:9093"
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.store.url.startswith("postgresql+psycopg://ctriage-pg-rw:5432/")
    assert (settings.fhir.http_host, settings.ingest.host, settings.admin.host) == ("0.0.0.0",) * 3
    assert settings.admin.hospitals == (settings.worker.hospital,)
    assert str(settings.worker.data_dir).startswith("/var/lib/ctriage")


def test_services_listen_where_their_settings_say(production: list[dict[str, Any]]) -> None:
    config = _config(production)
    ports = {
        d["metadata"]["name"]: {p["containerPort"] for c in d["spec"]["template"]["spec"]
                                ["containers"] for p in c.get("ports", [])}
        for d in _of_kind(production, "Deployment")
    }  # fmt: skip
    assert ports["ctriage-fhir-endpoint"] == {int(config["CTRIAGE_FHIR__HTTP_PORT"])}
    assert ports["ctriage-admin-api"] == {int(config["CTRIAGE_ADMIN__PORT"])}
    ingest_metrics = int(config["CTRIAGE_INGEST__METRICS_PORT"])
    assert ports["ctriage-dicom-receiver"] == {int(config["CTRIAGE_INGEST__PORT"]), ingest_metrics}
    assert ports["ctriage-dicomweb-poller"] == {ingest_metrics}
    assert ports["ctriage-worker"] == {int(config["CTRIAGE_WORKER__METRICS_PORT"])}
    # /metrics listens on the pod's address, not on its loopback only
    assert config["CTRIAGE_WORKER__BIND_HOST"] == "0.0.0.0"
    triton = {int(config[f"CTRIAGE_TRITON__{k}_PORT"]) for k in ("HTTP", "GRPC", "METRICS")}
    assert ports["ctriage-triton"] == triton


def test_triton_is_the_official_image_on_a_gpu(production: list[dict[str, Any]]) -> None:
    (triton,) = [d for d in _of_kind(production, "Deployment")
                 if d["metadata"]["name"] == "ctriage-triton"]  # fmt: skip
    (container,) = triton["spec"]["template"]["spec"]["containers"]
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", container["image"])
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "--model-config-name=gpu_onnxruntime" in container["args"]
    repository = K8S_ROOT.parent.parent / "inference" / "model_repository"
    assert (repository / "lesion_unet_onnx" / "configs" / "gpu_onnxruntime.pbtxt").is_file()


def test_grafana_gets_every_dashboard_as_built_by_the_code(
    production: list[dict[str, Any]],
) -> None:
    folder = BASE / "grafana" / "dashboards"
    built = {(model := build())["uid"]: model for build in DASHBOARDS.values()}
    files = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("*.json")}
    stale = sorted(uid for uid in built if files.get(uid) != built[uid])
    rebuild = f"ctriage dashboards build --out {folder.relative_to(BASE.parents[2])}"
    assert not stale, f"{stale} differ from the code: {rebuild}"
    assert sorted(files) == sorted(built)
    (provisioned,) = [
        c for c in _of_kind(production, "ConfigMap")
        if c["metadata"]["name"].startswith("ctriage-grafana-dashboards")
    ]  # fmt: skip
    assert {Path(k).stem for k in provisioned["data"]} == set(built)
    assert provisioned["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_grafana_datasources_are_the_types_the_dashboards_ask_for() -> None:
    (configmap,) = yaml.safe_load_all((BASE / "grafana" / "datasources.yaml").read_text())
    provisioning = yaml.safe_load(configmap["data"]["ctriage-datasources.yaml"])
    types = {d["type"] for d in provisioning["datasources"]}
    wanted = {v["query"] for build in DASHBOARDS.values()
              for v in build()["templating"]["list"] if v["type"] == "datasource"}  # fmt: skip
    assert types == wanted


def test_the_prometheus_rule_file_is_the_generated_one() -> None:
    assert (BASE / "prometheus-rule.yaml").read_text(encoding="utf-8") == rules.render()


def test_the_memory_panel_selects_every_ctriage_container(production: list[dict[str, Any]]) -> None:
    names = {c["name"] for d in _of_kind(production, "Deployment")
             for c in d["spec"]["template"]["spec"]["containers"]}  # fmt: skip
    assert names == set(CONTAINERS)


def _secret_fields() -> set[str]:
    """``CTRIAGE_*`` names of every setting that holds a secret (a ``SecretStr`` or tokens)."""
    names = set()
    for section, info in Settings.model_fields.items():
        model = info.annotation
        for field, sub in getattr(model, "model_fields", {}).items():
            if "SecretStr" in str(sub.annotation) or field == "tokens":
                names.add(f"CTRIAGE_{section.upper()}__{field.upper()}")
    return names


@pytest.mark.parametrize("overlay", ["production", "external_services"])
def test_secrets_come_from_secrets_only(overlay: str, request: pytest.FixtureRequest) -> None:
    objects = request.getfixturevalue(overlay)
    secret = _secret_fields()
    assert {"CTRIAGE_FHIR__TOKENS", "CTRIAGE_FHIR__JWT_HS256_SECRETS",
            "CTRIAGE_INGEST__DICOMWEB_TOKEN"} <= secret  # fmt: skip
    assert not secret & set(_config(objects)), "a secret in the ConfigMap"
    env = {
        (d["metadata"]["name"], e["name"]): e
        for d in _of_kind(objects, "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
    }
    for (where, name), entry in env.items():
        if name in secret:
            assert "secretKeyRef" in entry.get("valueFrom", {}), f"{where}: {name} is literal"
    assert ("ctriage-fhir-endpoint", "CTRIAGE_FHIR__TOKENS") in env
    assert ("ctriage-dicomweb-poller", "CTRIAGE_INGEST__DICOMWEB_TOKEN") in env


def test_the_ingress_services_are_scraped(production: list[dict[str, Any]]) -> None:
    config = _config(production)
    assert json.loads(config["CTRIAGE_INGEST__CALLING_AE_TITLES"])
    monitors = {m["metadata"]["name"]: m["spec"] for m in _of_kind(production, "PodMonitor")}
    fhir = monitors["ctriage-fhir-endpoint"]["podMetricsEndpoints"]
    assert fhir == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    for name in ("ctriage-dicom-receiver", "ctriage-dicomweb-poller"):
        assert monitors[name]["podMetricsEndpoints"][0]["port"] == "metrics", name
