"""The compose file validates offline, and each kind of defect makes the validator fail.

Broken variants are copies of deploy/compose in a temporary ``deploy/compose`` folder (next to a
link to the real ``deploy/k8s``, whose dashboards Grafana mounts) with one edit.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from deploy.compose import validate
from deploy.compose.validate import COMPOSE_FILE, COMPOSE_ROOT, EXAMPLE_ENV, load, read_env
from streams.settings import Settings

pytestmark = pytest.mark.unit


def test_the_shipped_compose_file_validates(capsys: pytest.CaptureFixture[str]) -> None:
    assert validate.validate() == []
    assert validate.main([]) == 0
    assert "0 errors" in capsys.readouterr().out


def test_the_rule_file_is_the_generated_one() -> None:
    assert (COMPOSE_ROOT / "prometheus" / "rules.yml").read_text() == validate.rules_text()


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "deploy" / "compose"
    shutil.copytree(COMPOSE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (tmp_path / "deploy" / "k8s").symlink_to(COMPOSE_ROOT.parent / "k8s")
    return root


BROKEN = [
    ("restart: unless-stopped\n    command:\n      - tritonserver",
     "restartt: unless-stopped\n    command:\n      - tritonserver", "restartt"),
    ("      models:\n        condition: service_completed_successfully",
     "      model:\n        condition: service_completed_successfully", "unknown service model"),
    ("image: postgres:17.5-bookworm", "image: postgres", "not pinned"),
    ("image: prom/prometheus:v3.5.0", "image: prom/prometheus:latest", "pinned to latest"),
    ("./prometheus/rules.yml:/etc", "./prometheus/rule.yml:/etc", "rule.yml does not exist"),
    ("      - worker-state:/var", "      - worker-data:/var", "worker-data is not declared"),
    ("shm_size: 2gb", "shm_size: [2]", "shm_size"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "expected"), BROKEN, ids=lambda v: str(v)[:30])
def test_a_broken_compose_file_fails_for_its_reason(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    root = _copy(tmp_path)
    text = (root / "compose.yaml").read_text()
    assert text.count(old) == 1, old
    (root / "compose.yaml").write_text(text.replace(old, new))
    errors = validate.validate(root / "compose.yaml", root / "example.env")
    assert any(expected in e for e in errors), errors


def test_a_missing_secret_fails_interpolation(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    env = (root / "example.env").read_text()
    (root / "example.env").write_text(re.sub(r"(?m)^PSEUDONYM_KEY=.*\n", "", env))
    errors = validate.validate(root / "compose.yaml", root / "example.env")
    assert errors == ["interpolation: ${PSEUDONYM_KEY}: set PSEUDONYM_KEY in deploy/compose/.env"]


def test_hand_edited_rules_and_a_bad_scrape_config_fail(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    rules = root / "prometheus" / "rules.yml"
    rules.write_text(rules.read_text().replace("> 60", "> 600"))
    config = root / "prometheus" / "prometheus.yml"
    config.write_text(config.read_text().replace("scrape_interval: 15s", "scrape_interval: 15"))
    errors = validate.validate(root / "compose.yaml", root / "example.env")
    assert any("differs from deploy.prometheus.ALERT_RULES" in e for e in errors), errors
    assert any(e.startswith("promtool check config") for e in errors), errors


SERVICES = ("worker", "fhir-endpoint", "dicom-receiver", "dicomweb-poller", "admin-api")


def _ctriage_environment(service: str = "worker") -> dict[str, Any]:
    project = load(COMPOSE_FILE, read_env(EXAMPLE_ENV))
    return dict(project["services"][service]["environment"])


def _settings(environment: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in environment.items():
        if value is not None:  # a key without a value: passed from .env when set there, else unset
            monkeypatch.setenv(name, str(value))
    return Settings()


def test_services_read_settings_that_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    environment = _ctriage_environment()
    settings = _settings(environment, monkeypatch)
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.triton.http_url == "triton:8000"
    assert settings.pseudonym.key.get_secret_value() == read_env(EXAMPLE_ENV)["PSEUDONYM_KEY"]
    assert settings.admin.tokens and settings.admin.tokens[0].role == "threshold-admin"
    assert settings.worker.bind_host == "0.0.0.0"
    assert settings.ingest.dicomweb_token is None and settings.ingest.dicomweb_username is None
    for service in SERVICES:
        for name in (n for n in _ctriage_environment(service) if n.startswith("CTRIAGE_")):
            section, _, field = name.removeprefix("CTRIAGE_").lower().partition("__")
            model = Settings.model_fields[section].annotation
            assert not field or field in model.model_fields, name  # type: ignore[union-attr]


def test_ingress_credentials_come_from_the_env_file(monkeypatch: pytest.MonkeyPatch) -> None:
    fhir = _settings(_ctriage_environment("fhir-endpoint"), monkeypatch).fhir
    assert fhir.tokens and fhir.tokens[0].token_sha256 and fhir.tokens[0].token is None
    assert fhir.jwt_issuer is None  # a key without a value stays unset, never ""
    receiver = _settings(_ctriage_environment("dicom-receiver"), monkeypatch).ingest
    assert receiver.calling_ae_titles == ("HOSPITAL_PACS",) and receiver.reject_unknown_sources
    assert receiver.metrics_port == 9100
    # secrets are interpolated from .env: none is written in the compose file itself
    text = COMPOSE_FILE.read_text()
    for secret in ("FHIR_TOKENS", "ADMIN_TOKENS", "PSEUDONYM_KEY", "POSTGRES_PASSWORD"):
        assert f"${{{secret}:?" in text, secret
    assert "token_sha256" not in text and "Bearer" not in text
