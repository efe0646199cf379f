"""The import-linter contracts in pyproject.toml hold on the code, and each one can fail.

Each case builds a tiny tree with the project's five top-level package names and exactly one
forbidden import, then runs the real ``lint-imports`` with the project's own contracts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from paths import REPO_ROOT

PACKAGES = ("streams", "inference", "triage", "dashboards", "deploy")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _contracts_config(tmp_path: Path) -> Path:
    """A pyproject.toml holding only the project's ``[tool.importlinter]`` table."""
    table = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    lines = ["[tool.importlinter]"]
    lines.append(f"root_packages = {list(table['root_packages'])!r}".replace("'", '"'))
    lines.append("include_external_packages = true")
    for contract in table["contracts"]:
        lines.append("\n[[tool.importlinter.contracts]]")
        for key, value in contract.items():
            rendered = repr(value).replace("'", '"')
            lines.append(f"{key} = {rendered}")
    config = tmp_path / "pyproject.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def _run(cwd: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _tree(root: Path, violation: tuple[str, str] | None) -> None:
    for name in PACKAGES:
        (root / name).mkdir()
        (root / name / "__init__.py").write_text("")
        (root / name / "core.py").write_text("import json\n")
    (root / "streams" / "agent.py").write_text("import kafka\nimport triage.core\n")
    if violation is not None:
        package, imported = violation
        (root / package / "bad.py").write_text(f"import {imported}\n")


def test_the_project_keeps_every_contract() -> None:
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout


def test_a_clean_tree_keeps_them(tmp_path: Path) -> None:
    _tree(tmp_path, None)
    done = _run(tmp_path, _contracts_config(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("violation", "contract"),
    [
        (("triage", "streams"), "Libraries never import the stream layer"),
        (("dashboards", "streams.core"), "Libraries never import the stream layer"),
        (("triage", "inference"), "Triage and inference never import each other"),
        (("inference", "triage.core"), "Triage and inference never import each other"),
        (("deploy", "dashboards"), "Launchers know no application package"),
        (("inference", "kafka"), "Only streams talks to Kafka"),
        (("deploy", "aiokafka"), "Only streams talks to Kafka"),
        (("triage", "faust"), "Only streams talks to Kafka"),
        (("dashboards", "typer"), "Option parsing and terminal output live in streams.cli only"),
        (("inference", "rich"), "Option parsing and terminal output live in streams.cli only"),
        (("streams", "inference.core"), "Other packages import a library through its public API"),
        (("streams", "deploy.core"), "Other packages import a library through its public API"),
    ],
)
def test_each_contract_fails_on_its_crossing(
    tmp_path: Path, violation: tuple[str, str], contract: str
) -> None:
    _tree(tmp_path, violation)
    done = _run(tmp_path, _contracts_config(tmp_path))
    assert done.returncode != 0
    assert f"{contract} BROKEN" in done.stdout, done.stdout
    assert done.stdout.count(" BROKEN") == 1, done.stdout  # that contract alone
