"""The threshold administration API as a user runs it (``ctriage admin-api``) on a real Kafka.

Explicit tests of authentication, roles, refused values and the records a change publishes,
then schemathesis against the API's own OpenAPI document. Each module run administers its own
hospital, so the shared broker's other tests never see these changes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from admin_api import ADMIN_TOKEN, VIEWER_TOKEN, AdminApiProcess, admin_tokens, request
from fhir.resources.R4B.auditevent import AuditEvent
from hypothesis import HealthCheck, settings
from kafka import KafkaConsumer
from stream_checks import ctriage

from streams import topics as t
from streams.admin.openapi import openapi_spec
from streams.records import ThresholdAudit, TriageConfig
from streams.settings import Settings

pytestmark = pytest.mark.integration

HOSPITAL = f"it-admin-{uuid.uuid4().hex[:8]}"
FUZZED = f"it-fuzz-{uuid.uuid4().hex[:8]}"


def api_settings(kafka_broker, run_dir: Path, port: int, hospital: str) -> Settings:
    return Settings(
        run_dir=run_dir,
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "partitions": 4},
        store={"url": f"sqlite:///{run_dir / 'store.sqlite'}"},
        worker={"hospital": hospital, "alert_threshold": 0.5, "threshold_version": "t1"},
        admin={"port": port, "tokens": admin_tokens(), "hospitals": [hospital]},
    )


@pytest.fixture(scope="module")
def api(kafka_broker, port_offset: int, tmp_path_factory) -> Iterator[AdminApiProcess]:
    run_dir = tmp_path_factory.mktemp("admin-api")
    server = AdminApiProcess(
        api_settings(kafka_broker, run_dir, 28090 + port_offset, HOSPITAL), run_dir / "api.log"
    )
    try:
        server.start()
    except RuntimeError as e:
        server.stop()
        pytest.fail(str(e))
    yield server
    server.stop()


def records(settings: Settings, topic: str, hospital: str, wanted: int) -> list[bytes]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    found: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and len(found) < wanted:
            for batch in consumer.poll(timeout_ms=1000).values():
                found += [r.value for r in batch if r.key == hospital.encode()]
    finally:
        consumer.close()
    return found


def test_tokens_are_required(api: AdminApiProcess) -> None:
    url = api.base_url
    status, body = request(url, "GET", "/v1/policies")
    assert status == 401 and body["error"] == "unauthenticated"
    assert request(url, "GET", "/v1/policies", token="not-a-token")[0] == 401
    assert request(url, "GET", f"/v1/policies/{HOSPITAL}/audit", token="")[0] == 401
    # the public parts
    assert request(url, "GET", "/health")[0] == 200
    status, spec = request(url, "GET", "/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.1")
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_viewer_reads_but_may_not_change(api: AdminApiProcess) -> None:
    url = api.base_url
    status, policy = request(url, "GET", f"/v1/policies/{HOSPITAL}", token=VIEWER_TOKEN)
    assert status == 200
    assert policy["source"] == "default" and policy["threshold_version"] == "t1"
    assert policy["levels"] == {"moderate": 0.25, "high": 0.5, "critical": 0.75}
    status, body = request(
        url,
        "POST",
        f"/v1/policies/{HOSPITAL}/changes",
        token=VIEWER_TOKEN,
        body={"levels": {"high": 0.4}, "reason": "viewer tries"},
    )
    assert status == 403 and body["error"] == "forbidden"
    status, table = request(
        url, "GET", "/v1/operating-points?studies_per_day=40", token=VIEWER_TOKEN
    )
    assert status == 200 and table["studies_per_day"] == 40
    assert table["volume_source"].startswith("given")
    assert any("high 0.5 (alerts)" in row["levels"] for row in table["rows"])
    status, table = request(url, "GET", "/v1/operating-points", token=VIEWER_TOKEN)
    assert status == 200 and table["studies_per_day"] is None  # no store yet: said so
    assert table["volume_source"].startswith("unknown")
    assert request(url, "GET", "/v1/policies/elsewhere", token=VIEWER_TOKEN)[0] == 404


def test_admin_changes_a_level_with_an_audit_record(api: AdminApiProcess) -> None:
    url = api.base_url
    path = f"/v1/policies/{HOSPITAL}/changes"
    change = {"levels": {"high": 0.4}, "reason": "winter surge: earlier warnings"}
    status, body = request(url, "POST", path, token=ADMIN_TOKEN, body=change)
    assert status == 201, body
    assert body["changed"] is True and body["previous_version"] == "t1"
    assert body["policy"]["threshold_version"] == "t2"
    assert body["policy"]["levels"]["high"] == 0.4 and body["policy"]["changed_by"] == "ana"
    # the same change again changes nothing: no new version, no audit record
    status, again = request(url, "POST", path, token=ADMIN_TOKEN, body=change)
    assert status == 200 and again["changed"] is False and again["audit_id"] is None

    status, trail = request(url, "GET", f"/v1/policies/{HOSPITAL}/audit", token=VIEWER_TOKEN)
    assert status == 200 and len(trail["records"]) == 1
    audit = trail["records"][0]
    assert audit["audit_id"] == body["audit_id"]
    assert (audit["changed_by"], audit["role"], audit["source"]) == (
        "ana",
        "threshold-admin",
        "admin-api",
    )
    assert (audit["old_version"], audit["new_version"]) == ("t1", "t2")
    assert audit["old_policy"]["levels"]["high"] == 0.5
    assert audit["new_policy"]["levels"]["high"] == 0.4
    AuditEvent.model_validate(audit["audit_event"])

    # both records are on Kafka: the compacted policy and the audit trail
    configs = [
        TriageConfig.model_validate_json(v)
        for v in records(api.settings, t.TRIAGE_CONFIG.name, HOSPITAL, 1)
    ]
    assert [c.threshold_version for c in configs] == ["t2"]
    assert configs[0].levels == {"moderate": 0.25, "high": 0.4, "critical": 0.75}
    audits = [
        ThresholdAudit.model_validate_json(v)
        for v in records(api.settings, t.TRIAGE_AUDIT.name, HOSPITAL, 1)
    ]
    assert [a.audit_id for a in audits] == [body["audit_id"]]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"levels": {"high": 1.5}, "reason": "r"}, 422, "threshold_out_of_range"),
        ({"levels": {"critical": -0.2}, "reason": "r"}, 422, "threshold_out_of_range"),
        ({"levels": {"high": 0.9}, "reason": "r"}, 422, "levels_not_ordered"),
        ({"levels": {"moderate": 0.45}, "reason": "r"}, 422, "levels_not_ordered"),
        ({"levels": {"severe": 0.5}, "reason": "r"}, 422, "unknown_level"),
        ({"levels": {"high": 0.3}, "reason": "  "}, 422, "empty_reason"),
        ({"levels": {"high": 0.3}}, 422, "invalid_change"),
        ({"levels": {"high": "x"}, "reason": "r"}, 422, "invalid_change"),
        ({"levels": {"high": 0.3}, "reason": "r", "by": "me"}, 422, "invalid_change"),
        (
            {"levels": {"high": 0.3}, "reason": "r", "expected_version": "t0"},
            409,
            "version_conflict",
        ),
        ([1, 2], 400, "invalid_body"),
        (
            {"calibration": {"site_calibration": {"layer": {}}}, "reason": "r"},
            422,
            "invalid_calibration",
        ),
        (
            {
                "calibration": {"base_version": "0123456789ab", "site_calibration": {"layer": {}}},
                "reason": "r",
            },
            422,
            "calibration_model_mismatch",
        ),
    ],  # fmt: skip
)
def test_refused_changes_say_why(api: AdminApiProcess, body, status: int, error: str) -> None:
    path = f"/v1/policies/{HOSPITAL}/changes"
    got, answer = request(api.base_url, "POST", path, token=ADMIN_TOKEN, body=body)
    assert (got, answer["error"]) == (status, error), answer
    assert answer["detail"]


def test_a_site_calibration_through_the_api_is_shown_and_audited(
    api: AdminApiProcess, site_models: Path
) -> None:
    """The body carries what ``ctriage thresholds set --calibration DIR`` sends."""
    card = json.loads((site_models / "ventilation.card.json").read_text())
    calibration = {
        "base_version": card["base_version"],
        "site_calibration": card["site_calibration"],
    }
    path = f"/v1/policies/{HOSPITAL}/changes"
    body = {"calibration": calibration, "reason": "site layer"}
    got, answer = request(api.base_url, "POST", path, token=ADMIN_TOKEN, body=body)
    assert got == 201, answer
    assert answer["policy"]["calibration"]["model_version"] == card["version"]
    body = {"calibration": {}, "reason": "shipped model again"}
    got, answer = request(api.base_url, "POST", path, token=ADMIN_TOKEN, body=body)
    assert got == 201 and answer["policy"]["calibration"] is None, answer
    trail = request(api.base_url, "GET", f"{path[:-8]}/audit", token=VIEWER_TOKEN)[1]["records"]
    assert trail[-2]["new_policy"]["calibration"] == calibration
    assert "calibration" not in trail[-1]["new_policy"]


def test_not_json_is_a_bad_request(api: AdminApiProcess) -> None:
    path = f"/v1/policies/{HOSPITAL}/changes"
    status, body = request(api.base_url, "POST", path, token=ADMIN_TOKEN, raw=b"{high: 0.4")
    assert (status, body["error"]) == (400, "invalid_json")
    status, body = request(
        api.base_url, "POST", "/v1/policies/elsewhere/changes", token=ADMIN_TOKEN, body={}
    )
    assert status == 404 and body["error"] == "unknown_hospital"


def test_a_restarted_api_reads_the_policy_back_from_kafka(api: AdminApiProcess) -> None:
    before = request(api.base_url, "GET", f"/v1/policies/{HOSPITAL}", token=VIEWER_TOKEN)[1]
    api.stop()
    api.start()
    status, after = request(api.base_url, "GET", f"/v1/policies/{HOSPITAL}", token=VIEWER_TOKEN)
    assert status == 200 and after == before and after["source"] == "triage.config"
    trail = request(api.base_url, "GET", f"/v1/policies/{HOSPITAL}/audit", token=VIEWER_TOKEN)[1]
    assert len(trail["records"]) >= 1


def test_cli_change_reaches_the_running_api(api: AdminApiProcess) -> None:
    url, path = api.base_url, f"/v1/policies/{HOSPITAL}"
    before = request(url, "GET", path, token=VIEWER_TOKEN)[1]
    args = ["--hospital", HOSPITAL, "--level", "critical", "--value", "0.9"]
    done = ctriage(api.settings, "thresholds", "set", *args, "--reason", "cli", "--by", "carl")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{before['threshold_version']} ->" in done.stdout
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the API follows triage.config: no restart
        after = request(url, "GET", path, token=VIEWER_TOKEN)[1]
        if after["threshold_version"] != before["threshold_version"]:
            break
        time.sleep(0.2)
    assert after["levels"]["critical"] == 0.9 and after["changed_by"] == "carl"
    trail = request(url, "GET", f"{path}/audit", token=VIEWER_TOKEN)[1]["records"]
    assert (trail[-1]["changed_by"], trail[-1]["source"]) == ("carl", "cli")
    refused = ctriage(api.settings, "thresholds", "set", *args[:4], "--value", "0.2",
                      "--reason", "cli")  # fmt: skip
    assert refused.returncode == 2 and "levels_not_ordered" in refused.stdout
    history = ctriage(api.settings, "thresholds", "history", "--hospital", HOSPITAL)
    assert history.returncode == 0 and "carl" in history.stdout and "ana" in history.stdout
    show = ctriage(api.settings, "thresholds", "show", "--hospital", HOSPITAL,
                   "--studies-per-day", "30")  # fmt: skip
    assert show.returncode == 0, show.stderr
    assert f"version {after['threshold_version']}" in show.stdout
    assert "critical 0.9" in show.stdout and "alerts / day" in show.stdout


def test_cli_through_the_api_is_authenticated_and_audited_as_the_token_user(
    api: AdminApiProcess,
) -> None:
    url, path = api.base_url, f"/v1/policies/{HOSPITAL}"
    before = request(url, "GET", path, token=VIEWER_TOKEN)[1]
    args = ["thresholds", "set", "--hospital", HOSPITAL, "--level", "critical", "--api", url]
    done = ctriage(api.settings, *args, "--value", "0.85", "--reason", "via api",
                   "--token", ADMIN_TOKEN)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        f"{before['threshold_version']} ->" in done.stdout
        and "through the admin API" in done.stdout
    )
    # no waiting: the API answered after applying it
    after = request(url, "GET", path, token=VIEWER_TOKEN)[1]
    assert after["levels"]["critical"] == 0.85 and after["changed_by"] == "ana"
    trail = request(url, "GET", f"{path}/audit", token=VIEWER_TOKEN)[1]["records"]
    assert (trail[-1]["changed_by"], trail[-1]["source"]) == ("ana", "admin-api")
    # a viewer's token is refused by the API, a missing token and --by by the CLI itself
    viewer = ctriage(
        api.settings, *args, "--value", "0.8", "--reason", "x", "--token", VIEWER_TOKEN
    )
    assert viewer.returncode == 2 and "HTTP 403" in viewer.stdout
    anonymous = ctriage(api.settings, *args, "--value", "0.8", "--reason", "x")
    assert anonymous.returncode == 2 and "needs a token" in anonymous.stdout
    as_someone = ctriage(api.settings, *args, "--value", "0.8", "--reason", "x", "--by", "eve",
                         "--token", ADMIN_TOKEN)  # fmt: skip
    assert as_someone.returncode == 2 and "--by is not taken" in as_someone.stdout
    unordered = ctriage(api.settings, *args, "--value", "0.1", "--reason", "x", "--token",
                        ADMIN_TOKEN)  # fmt: skip
    assert unordered.returncode == 2 and "levels_not_ordered" in unordered.stdout
    assert request(url, "GET", path, token=VIEWER_TOKEN)[1]["levels"]["critical"] == 0.85


# --- schemathesis: the API against its own OpenAPI document ------------------------------


@pytest.fixture(scope="module")
def fuzzed_api(kafka_broker, port_offset: int, tmp_path_factory) -> Iterator[AdminApiProcess]:
    run_dir = tmp_path_factory.mktemp("admin-api-fuzz")
    server = AdminApiProcess(
        api_settings(kafka_broker, run_dir, 28091 + port_offset, FUZZED), run_dir / "api.log"
    )
    try:
        server.start()
    except RuntimeError as e:
        server.stop()
        pytest.fail(str(e))
    yield server
    server.stop()


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 6,
        "headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"},
        "generation": {"max-examples": 25},
        "checks": {
            # a schema-valid change can still put the levels out of order (JSON Schema cannot
            # compare two properties): 422 with a reason code is the right answer there
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]
            }
        },
    }
)
# The document the server serves for FUZZED (checked equal below). schemathesis' lazy loader
# (from_fixture) does not run on pytest 9, so the schema is built at import and the running
# server's URL is given per call.
schema = schemathesis.openapi.from_dict(openapi_spec([FUZZED]), config=CONFIG)


@pytest.fixture(scope="module")
def urllib3_future_compatible() -> Iterator[None]:
    """Let schemathesis 4.32 run where urllib3-future holds the ``urllib3`` name.

    grafana-client brings niquests, whose urllib3-future replaces urllib3's pool container; the
    schemathesis transport counts open connections with the original's ``pools.keys()`` (only to
    decide whether to resend a request once after a dropped keep-alive connection). Counting
    zero keeps that resend and nothing else; requests still go over the network to the server.
    """
    import schemathesis.transport.requests as transport

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transport, "_count_opened_connections", lambda session: 0)
        yield


def test_the_fuzzed_document_is_the_served_one(fuzzed_api: AdminApiProcess) -> None:
    assert request(fuzzed_api.base_url, "GET", "/openapi.json")[1] == openapi_spec([FUZZED])


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi(
    case, fuzzed_api: AdminApiProcess, urllib3_future_compatible: None
) -> None:
    response = case.call_and_validate(base_url=fuzzed_api.base_url)
    if response.status_code == 422:
        assert response.json()["error"] in {
            "threshold_out_of_range",
            "levels_not_ordered",
            "unknown_level",
            "missing_level",
            "empty_reason",
            "invalid_change",
            "invalid_query",
            "invalid_calibration",
            "calibration_model_mismatch",
        }, response.text
    if case.method == "POST" and response.status_code == 201:
        assert json.loads(response.text)["policy"]["changed_by"] == "ana"
