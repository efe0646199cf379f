"""The agents' import shape: no agent imports another agent or the app (no import cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from paths import REPO_ROOT

pytestmark = pytest.mark.unit

AGENTS = REPO_ROOT / "streams" / "agents"


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports (``from a.b import c`` counts ``a.b`` and ``a.b.c``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def agent_modules() -> dict[str, Path]:
    """Modules that declare agents: they have a ``register(pipeline)``."""
    return {
        f"streams.agents.{path.stem}": path
        for path in sorted(AGENTS.glob("*.py"))
        if "def register(" in path.read_text()
    }


def test_the_agent_modules_are_found() -> None:
    names = set(agent_modules())
    assert {"streams.agents.risk", "streams.agents.capacity", "streams.agents.clinical"} <= names
    assert "streams.agents.scoring" not in names and "streams.agents.base" not in names


@pytest.mark.parametrize("module", sorted(agent_modules()))
def test_no_agent_imports_another_agent_or_the_app(module: str) -> None:
    imports = imported_modules(agent_modules()[module])
    others = set(agent_modules()) - {module}
    assert not imports & others, f"{module} imports agents {sorted(imports & others)}"
    assert "streams.app" not in imports


def test_shared_agent_helpers_import_no_agent() -> None:
    agents = set(agent_modules())
    for path in AGENTS.glob("*.py"):
        if f"streams.agents.{path.stem}" not in agents:
            assert not imported_modules(path) & agents, path.name
