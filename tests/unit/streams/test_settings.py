"""Settings handed to a child process through the environment come back identical."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.settings import Settings, load_settings, settings_env

pytestmark = pytest.mark.unit


def test_settings_survive_the_trip_through_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    original = Settings(
        run_dir=tmp_path / "run",
        kafka={"bootstrap_servers": "127.0.0.1:1", "partitions": 8, "sasl_password": "s3cret"},
        triton={"http_port": 1234},
        pseudonym={"key": "k" * 32, "key_version": "k9"},
        store={"url": f"sqlite:///{tmp_path / 'x.sqlite'}"},
        worker={"app_id": "child", "alert_threshold": 0.3, "data_dir": tmp_path / "w"},
        ingest={"writeback_url": "http://127.0.0.1:8042/dicom-web"},
    )
    env = settings_env(original)
    for name in list(os.environ):
        if name.startswith("CTRIAGE_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings() == original
    assert env["CTRIAGE_KAFKA__SASL_PASSWORD"] == "s3cret"
    assert "CTRIAGE_KAFKA__SASL_USERNAME" not in env  # None stays unset


def test_worker_index_gives_each_worker_its_own_ports_and_state(tmp_path) -> None:
    from streams.settings import WorkerSettings

    first = WorkerSettings(data_dir=tmp_path / "worker")
    third = WorkerSettings(data_dir=tmp_path / "worker", index=2)
    assert (first.own_web_port, first.own_metrics_port) == (16066, 19100)
    assert (third.own_web_port, third.own_metrics_port) == (16068, 19102)
    assert first.own_data_dir == tmp_path / "worker"
    assert third.own_data_dir == tmp_path / "worker-2"


def test_replication_follows_the_cluster_size() -> None:
    from streams.settings import KafkaSettings

    assert (KafkaSettings().replication, KafkaSettings().min_insync) == (1, 1)
    assert (KafkaSettings(nodes=3).replication, KafkaSettings(nodes=3).min_insync) == (3, 2)
    explicit = KafkaSettings(nodes=3, replication_factor=2, min_insync_replicas=1)
    assert (explicit.replication, explicit.min_insync) == (2, 1)
