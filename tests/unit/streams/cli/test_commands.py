"""The ``ctriage`` command tree: every command keeps its name and its options.

``EXPECTED`` was captured by walking the tree before the CLI became one package
(``streams/cli/``, one module per command group); a renamed command or option fails here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from paths import REPO_ROOT, RISK_MODELS
from typer.testing import CliRunner

from streams.cli import app
from triage.risk.model import load_card

# (command path, its parameters: options by their flags, arguments in upper case)
EXPECTED: list[tuple[str, tuple[str, ...]]] = [
    ("admin-api", ("--port", "--loglevel")),
    ("capacity backtest", ("--csv", "--json", "--population", "--horizon", "--step-days", "--start", "--end", "--source", "--data", "--region")),  # noqa: E501
    ("capacity fit-stay", ("--csv", "--json", "--start", "--end", "--by-year")),
    ("capacity forecast", ("--cohort", "--capacity-beds", "--now", "--days", "--los-mean-days")),
    ("capacity plot", ("--out", "--csv", "--origin", "--capacity", "--name", "--horizon", "--history-days", "--source", "--data", "--region")),  # noqa: E501
    ("cohort export", ("--out", "--store-url")),
    ("cohort generate", ("OUT", "--patients/-n", "--seed", "--matrix", "--slices", "--hospital", "--icu-occupants", "--window-h", "--follow-up-share")),  # noqa: E501
    ("dashboards build", ("--out",)),
    ("dashboards list", ()),
    ("dashboards push", ("--url", "--token", "--folder-uid", "--no-overwrite/--overwrite", "--timeout-s")),  # noqa: E501
    ("demo", ("--patients", "--seed", "--speed", "--matrix", "--slices", "--timeout-s", "--keep-services/--no-keep-services", "--lesion-model")),  # noqa: E501
    ("dlq replay", ("--topic", "--reason", "--idle-timeout-s")),
    ("fhir-endpoint", ("--loglevel",)),
    ("ingest", ("PATH",)),
    ("ingest-fhir", ("PATH", "--fhir-version", "--dry-run/--no-dry-run")),
    ("patient timeline", ("PSEUDONYM", "--png", "--wait-s")),
    ("poll-dicomweb", ("--url", "--interval-s", "--no-once/--once")),
    ("quantify", ("PATH", "--local", "--url", "--model", "--timeout-s", "--out", "--verbose/-v")),
    ("receive", ("--stability-s",)),
    ("replay", ("COHORT", "--speed")),
    ("risk recalibrate", ("--csv", "--out", "--models", "--site")),
    ("risk score", ("--csv", "--out", "--models")),
    ("risk validate", ("--csv", "--models", "--json", "--plots", "--threshold", "--bootstrap", "--seed")),  # noqa: E501
    ("services down", ("--only", "--timeout-s")),
    ("services status", ()),
    ("services up", ("--only", "--model-repository", "--timeout-s", "--kafka-nodes")),
    ("thresholds history", ("--hospital",)),
    ("thresholds set", ("--reason", "--level", "--value", "--worsening-lesion-points", "--worsening-severity-points", "--worsening-aerated-points", "--worsening-days", "--hospital", "--by", "--alert-from", "--expected-version", "--calibration", "--no-calibration", "--api", "--token")),  # noqa: E501
    ("thresholds show", ("--model", "--hospital", "--studies-per-day")),
    ("topics", ()),
    ("train", ("--out", "--cohort", "--mexico", "--seed", "--target", "--threshold", "--workers")),
    ("worker", ("--loglevel", "--index")),
]  # fmt: skip


def command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, tuple[str, ...]]]:
    """Every invocable command under ``command`` with its parameters, sorted by path.

    A group that runs without a sub-command (``quantify``) counts as a command; the root's
    completion options are Typer's, not ours.
    """
    rows: list[tuple[str, tuple[str, ...]]] = []
    children = getattr(command, "commands", None)
    if path and (children is None or command.invoke_without_command):
        params = tuple(
            "/".join(sorted([*p.opts, *p.secondary_opts]))
            if p.param_type_name == "option"
            else str(p.name).upper()
            for p in command.params
        )
        rows.append((" ".join(path), params))
    for name in sorted(children or {}):
        rows += command_paths(children[name], (*path, name))
    return rows


def test_every_command_keeps_its_name_and_options() -> None:
    assert command_paths(typer.main.get_command(app)) == EXPECTED


def test_the_walk_sees_a_renamed_option() -> None:
    """The walk reads the real tree: a changed option shows up in its result."""
    renamed = typer.Typer()

    @renamed.command("one")
    def one(speed: float = 1.0) -> None:
        """Only here to be walked."""

    @renamed.command("two")
    def two(pace: float = 1.0) -> None:
        """Only here to be walked."""

    assert command_paths(typer.main.get_command(renamed)) == [
        ("one", ("--speed",)),
        ("two", ("--pace",)),
    ]


@pytest.fixture()
def no_broker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Settings for a CLI run where Kafka is down (nothing listens on port 1) and no store."""
    env = {
        "CTRIAGE_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "CTRIAGE_ADMIN__READ_TIMEOUT_S": "1",
        "CTRIAGE_STORE__URL": f"sqlite:///{tmp_path / 'none' / 'store.sqlite'}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_thresholds_show_prints_the_cards_operating_points(no_broker: dict[str, str]) -> None:
    model = RISK_MODELS / "ventilation.ubj"
    args = ["thresholds", "show", "--model", str(model), "--studies-per-day", "120"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "operating points" in text
    assert "levels in force" in text and "Kafka not reachable" in text
    points = load_card(model)["operating_points"]
    assert points
    for point in points:  # each row, with its alerts per day at 120 studies a day
        per_day = round(float(point["alerts_per_100"]) / 100.0 * 120, 2)
        assert f"{float(point['threshold']):.3f}" in text and f"{per_day:.3f}" in text


def test_thresholds_show_refuses_a_missing_model(no_broker: dict[str, str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["thresholds", "show", "--model", str(tmp_path / "no.ubj")])
    assert result.exit_code == 2
    assert "missing_file" in result.output


def test_python_dash_m_runs_the_same_tree(no_broker: dict[str, str]) -> None:
    """``python -m streams.cli`` (and the console script's ``main``) front the same commands."""
    model = RISK_MODELS / "ventilation.ubj"
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "thresholds", "show", "--model", str(model)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "operating points" in " ".join(done.stdout.split())
