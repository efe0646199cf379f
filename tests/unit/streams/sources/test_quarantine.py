"""The ingress quarantine: private to the service, bounded, and empty after a dry run."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streams.cli import app
from streams.sources.quarantine import Quarantine

pytestmark = pytest.mark.unit


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_and_folder_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        held = Quarantine(tmp_path / "run" / "quarantine")
        name = held.hold({"resourceType": "Patient", "name": [{"family": "Canary"}]})
    finally:
        os.umask(old)
    assert name is not None
    assert mode(tmp_path / "run" / "quarantine") == 0o700
    assert mode(tmp_path / "run" / "quarantine" / name) == 0o600


def test_bounded_by_count_and_size_oldest_removed_first(tmp_path: Path) -> None:
    held = Quarantine(tmp_path, max_files=3, max_bytes=100)
    names = [held.hold(f"payload {i}") for i in range(5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])  # type: ignore[type-var]
    assert held.usage() == (3, 27)
    big = held.hold("x" * 90)  # room is made by removing the oldest
    assert big is not None and held.usage()[1] <= 100
    assert held.hold("y" * 101) is None  # larger than the whole quarantine: not kept
    assert Quarantine(tmp_path, max_files=0).hold("anything") is None
    # a new process finds what is there and keeps the bounds
    again = Quarantine(tmp_path, max_files=2, max_bytes=100)
    again.hold("z")
    assert again.usage()[0] == 2


def test_dry_run_writes_nothing_and_a_real_run_quarantines_rejects(
    tmp_path: Path, shared_data: Path
) -> None:
    """``ctriage ingest-fhir --dry-run`` over real bundles and a broken one leaves no file."""
    folder = tmp_path / "in"
    folder.mkdir()
    for source in sorted((shared_data / "fhir" / "synthea-covid" / "bundles").glob("*.json"))[:2]:
        (folder / source.name).write_bytes(source.read_bytes())
    broken = {"resourceType": "Patient", "id": "raw-9", "birthDate": "1957-13-45"}
    (folder / "broken.json").write_text(json.dumps(broken))
    run_dir = tmp_path / "run"
    env = {"CTRIAGE_RUN_DIR": str(run_dir), "CTRIAGE_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    result = CliRunner().invoke(app, ["ingest-fhir", str(folder), "--dry-run"], env=env)
    assert result.exit_code == 0, result.output
    assert "validation_failed" in result.output
    assert "nothing published, nothing written" in result.output
    assert not run_dir.exists()


def test_ingest_fhir_without_kafka_says_so_and_exits_2(tmp_path: Path) -> None:
    """No broker at the address: a clear error, exit code 2, no traceback."""
    (tmp_path / "p.json").write_text(json.dumps({"resourceType": "Patient", "id": "p"}))
    env = {
        "CTRIAGE_RUN_DIR": str(tmp_path / "run"),
        "CTRIAGE_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9",  # discard port: nothing answers
        "CTRIAGE_FHIR__KAFKA_WAIT_S": "1",
    }
    result = CliRunner().invoke(app, ["ingest-fhir", str(tmp_path / "p.json")], env=env)
    assert result.exit_code == 2, result.output
    assert "no Kafka broker answered at 127.0.0.1:9 within 1 s" in result.output
    assert "Traceback" not in result.output
