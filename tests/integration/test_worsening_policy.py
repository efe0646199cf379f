"""A hospital's worsening rule changed through the running admin API reaches a running worker.

The unit tests cover the policy and the API handler; here the whole path a bed manager's or
radiologist's request takes (issue 16: "audited thresholds like the others"): ``ctriage
admin-api`` publishes the new policy on ``triage.config`` with its audit record, the running
``ctriage worker`` applies it without a restart, and the next follow-up CT is judged by it. A
rise of 7 points of lung does not alert under the default rule (10 points) and does under the
hospital's new one (5 points), and the alert names the rule and the policy version.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from admin_api import ADMIN_TOKEN, AdminApiProcess, admin_tokens, request
from stream_checks import (
    publish_quantifications,
    quantification,
    start_group_at_end,
    stored_revisions,
    topic_values,
    wait_for,
)

from streams import topics as t
from streams.demo import DemoError, WorkerProcess
from streams.records import Alert
from streams.settings import Settings
from triage.alerts import WorseningRule

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
HOSPITAL = f"it-worsening-{RUN}"
START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)


@pytest.fixture
def settings(kafka_broker, postgres_server, port_offset: int, tmp_path) -> Settings:
    return Settings(
        run_dir=tmp_path,
        kafka={"bootstrap_servers": kafka_broker.bootstrap_servers, "partitions": 4},
        store={"url": postgres_server.create_database(f"worsening_policy_{RUN}")},
        worker={
            "app_id": f"ctriage-worsening-policy-{RUN}",
            "metrics_port": 29230 + port_offset,
            "web_port": 26196 + port_offset,
            "hospital": HOSPITAL,
            "data_dir": tmp_path / "worker",
            "threshold_version": "t1",
        },
        admin={"port": 28092 + port_offset, "tokens": admin_tokens(), "hospitals": [HOSPITAL]},
    )


def _follow_up(settings: Settings, patient: str) -> tuple[str, str]:
    """A patient's two CTs, 10 % then 17 % of lung two days later; both stored."""
    root = f"2.25.{uuid.uuid4().int % 10**12}"
    pseudonym = f"k1-worsening-{RUN}-{patient}"
    prior = quantification(f"{root}.1", pseudonym, HOSPITAL, START.isoformat(), 10.0)
    later = quantification(
        f"{root}.2", pseudonym, HOSPITAL, (START + timedelta(days=2)).isoformat(), 17.0
    )
    for record in (prior, later):  # in order: the follow-up finds its prior in the timeline
        publish_quantifications(settings.kafka.bootstrap_servers, [record])
        uid = {record.study_uid}
        wait_for(lambda u=uid: stored_revisions(settings.store.url, u), 60, "stored")  # type: ignore[misc]
    return prior.study_uid, later.study_uid


def _worsening(settings: Settings, study_uid: str) -> list[Alert]:
    values = topic_values(settings.kafka.bootstrap_servers, t.TRIAGE_ALERTS.name)
    alerts = (Alert.model_validate_json(v) for v in values)
    return [a for a in alerts if a.study_uid == study_uid and a.kind == "worsening"]


def test_a_rule_changed_through_the_api_judges_the_next_follow_up(settings) -> None:
    start_group_at_end(settings.kafka.bootstrap_servers, settings.worker.app_id)
    worker = WorkerProcess(settings)
    api = AdminApiProcess(settings, settings.run_dir / "api.log")
    try:
        worker.start(timeout_s=180)
        api.start()
        _, before = _follow_up(settings, "before")
        time.sleep(3)  # a worsening alert follows its risk record within milliseconds
        assert _worsening(settings, before) == []  # +7 points: under the default 10

        change = {"worsening": {"lesion_rise_points": 5}, "reason": "earlier follow-up review"}
        status, body = request(
            api.base_url, "POST", f"/v1/policies/{HOSPITAL}/changes", token=ADMIN_TOKEN,
            body=change,
        )  # fmt: skip
        assert status == 201, body
        version = body["policy"]["threshold_version"]
        assert body["policy"]["worsening"]["lesion_rise_points"] == 5.0
        applied = f"alert policy of {HOSPITAL} is now {version}"
        wait_for(lambda: applied in worker.log_path.read_text(), 60, "the worker applies it")

        _, after = _follow_up(settings, "after")
        wait_for(lambda: _worsening(settings, after), 30, "a worsening alert")
        [alert] = _worsening(settings, after)
        assert alert.worsening_rule == WorseningRule(lesion_rise_points=5.0).version
        assert alert.threshold_version == version
        assert alert.worsening_reasons == ["lesion_rise"]
        assert alert.worsening_since is not None
        assert alert.worsening_since.lesion_points == pytest.approx(7.0)
        status, trail = request(
            api.base_url, "GET", f"/v1/policies/{HOSPITAL}/audit", token=ADMIN_TOKEN
        )
        assert status == 200 and trail["records"][-1]["new_version"] == version
    except (DemoError, RuntimeError) as e:
        pytest.fail(f"a service did not start ({e})")
    finally:
        api.stop()
        worker.stop()
