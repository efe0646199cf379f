"""Admin tokens and roles, policy records old and new, the thresholds CLI without a broker."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from paths import REPO_ROOT
from pydantic import ValidationError
from typer.testing import CliRunner

from streams.admin.auth import AdminRoleValues, TokenBook
from streams.admin.openapi import openapi_spec
from streams.agents.config import policy_of
from streams.cli.root import app
from streams.records import Alert, TriageConfig
from streams.settings import AdminToken, Settings, settings_env
from triage.alerts.policy import AlertPolicy, RiskLevelValues
from triage.exceptions import ConfigRejected, ConfigRejectionReason

pytestmark = pytest.mark.unit

REPO = REPO_ROOT


def book() -> TokenBook:
    return TokenBook(
        [
            AdminToken(user="vera", role="viewer", token="v-secret"),
            AdminToken(
                user="ana",
                role="threshold-admin",
                token_sha256=hashlib.sha256(b"a-secret").hexdigest(),
            ),
        ]
    )


def test_bearer_tokens_resolve_to_users_and_roles() -> None:
    tokens = book()
    viewer = tokens.principal("Bearer v-secret")
    admin = tokens.principal("bearer a-secret")  # the scheme is case-insensitive
    assert viewer is not None and (viewer.user, viewer.role) == ("vera", AdminRoleValues.VIEWER)
    assert admin is not None and admin.role.may_change() and not viewer.role.may_change()
    for header in (None, "", "Bearer", "Bearer ", "Basic v-secret", "Bearer v-secre", "v-secret"):
        assert tokens.principal(header) is None


def test_a_token_entry_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="neither token nor digest"):
        TokenBook([AdminToken(user="x", role="viewer")])
    with pytest.raises(ValidationError):
        AdminToken(user="x", role="superuser", token="t")  # type: ignore[arg-type]


def test_tokens_travel_to_child_processes_and_stay_secret_in_repr() -> None:
    settings = Settings(
        admin={"tokens": [{"user": "ana", "role": "threshold-admin", "token": "a-secret"}]}
    )
    assert "a-secret" not in repr(settings)
    env = settings_env(settings)
    old = {k: v for k, v in os.environ.items() if k.startswith("CTRIAGE_")}
    try:
        for key in old:
            del os.environ[key]
        os.environ.update(env)
        child = Settings()
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(old)
    assert child.admin.tokens[0].token is not None
    assert child.admin.tokens[0].token.get_secret_value() == "a-secret"
    assert child.admin == settings.admin


def record(**fields: object) -> TriageConfig:
    base: dict[str, object] = {
        "hospital": "h",
        "threshold_version": "t3",
        "changed_by": "ana",
        "reason": "r",
        "changed_at": time.time(),
    }
    base.update(fields)
    return TriageConfig.model_validate(base)


def test_policy_records_new_and_old() -> None:
    new = record(levels={"moderate": 0.1, "high": 0.3, "critical": 0.6}, alert_from="moderate")
    policy = policy_of(new)
    assert policy.alert_from is RiskLevelValues.MODERATE and policy.threshold == 0.1
    old = TriageConfig.model_validate_json(
        json.dumps(
            {
                "hospital": "h",
                "threshold": 0.4,
                "threshold_version": "t1",
                "changed_by": "x",
                "reason": "r",
                "changed_at": 0.0,
            }
        )  # fmt: skip
    )
    assert policy_of(old) == AlertPolicy.single(0.4, "t1")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"levels": {"moderate": 0.5, "high": 0.3, "critical": 0.6}}, "levels_not_ordered"),
        ({"levels": {"moderate": 0.1, "high": 0.3}}, "missing_level"),
        ({"levels": {"moderate": 0.1, "high": 0.3, "critical": 1.6}}, "threshold_out_of_range"),
        (
            {"levels": {"moderate": 0.1, "high": 0.3, "critical": 0.6}, "alert_from": "x"},
            "unknown_level",
        ),
        ({}, "missing_level"),
    ],
)
def test_invalid_policy_records_have_a_reason(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(ConfigRejected) as info:
        policy_of(record(**fields))
    assert info.value.reason is ConfigRejectionReason(reason)


def test_old_alert_records_still_parse() -> None:
    old = {
        "alert_id": "a", "risk_id": "r", "study_uid": "1.2", "patient_pseudonym": "k1-x",
        "probability": 0.7, "level": "high", "model_version": "m", "threshold_version": "t1",
        "lesion_percent": 3.0, "top_features": [], "completeness": "complete",
        "ct_time": "2026-01-01T00:00:00+00:00", "hospital": "h", "raised_at": 1.0,
    }  # fmt: skip
    alert = Alert.model_validate(old)
    assert alert.kind == "initial" and alert.escalated_from is None


def test_the_spec_names_the_hospitals_and_the_roles() -> None:
    spec = openapi_spec(["h1", "h2"])
    post = spec["paths"]["/v1/policies/{hospital}/changes"]["post"]
    assert post["parameters"][0]["schema"]["enum"] == ["h1", "h2"]
    assert post["security"] == [{"bearerAuth": []}]
    assert set(post["responses"]) >= {"201", "401", "403", "409", "422"}
    assert spec["paths"]["/health"]["get"]["security"] == []


@pytest.fixture()
def no_broker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings for a CLI run where Kafka is down and there is no store."""
    monkeypatch.setenv("CTRIAGE_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("CTRIAGE_ADMIN__READ_TIMEOUT_S", "1")
    monkeypatch.setenv("CTRIAGE_STORE__URL", f"sqlite:///{tmp_path / 'none' / 'store.sqlite'}")


def test_thresholds_show_without_broker_says_so(no_broker: None) -> None:
    result = CliRunner().invoke(app, ["thresholds", "show", "--studies-per-day", "200"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Kafka not reachable" in text and "levels in force" in text
    assert "alerts / day" in result.output.replace("\n", " ") or "alerts /" in result.output
    assert "given (--studies-per-day)" in text
    result = CliRunner().invoke(app, ["thresholds", "show"])
    assert result.exit_code == 0, result.output
    assert "does not exist yet" in " ".join(result.output.split())


def test_thresholds_set_refuses_before_reaching_kafka(no_broker: None) -> None:
    args = ["thresholds", "set", "--level", "low", "--value", "0.1", "--reason", "x"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "unknown_level" in result.output
    args = [
        "thresholds",
        "set",
        "--level",
        "high",
        "--value",
        "0.4",
        "--reason",
        "x",
        "--alert-from",
        "urgent",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "unknown_level" in result.output
