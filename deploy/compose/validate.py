"""Validate the single-host compose file offline (``make lint``); Docker Compose is not needed.

``python -m deploy.compose.validate`` interpolates ``compose.yaml`` with ``example.env`` the way
Compose does (``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``, ``$$``), validates the result
against the Compose Specification's JSON schema (``schema/compose-spec.json`` of the pinned
``compose-go`` module, the library Docker Compose itself loads files with), then checks what the
schema cannot: every ``depends_on`` names a service, every named volume is declared, every bind
mount exists, every image is pinned to a tag, Prometheus scrapes services that exist, and its
rule file is :data:`deploy.prometheus.ALERT_RULES`, and ``promtool check config`` accepts the
configuration with its rules. ``--write-rules`` rewrites the rule file.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from deploy.k8s.schemas import CrdSource, SchemaUnavailable, pinned_file
from deploy.prometheus import ALERT_RULES

COMPOSE_ROOT = Path(__file__).resolve().parent
COMPOSE_FILE = COMPOSE_ROOT / "compose.yaml"
EXAMPLE_ENV = COMPOSE_ROOT / "example.env"
RULES_FILE = COMPOSE_ROOT / "prometheus" / "rules.yml"
COMPOSE_SCHEMA = CrdSource(
    "github.com/compose-spec/compose-go/v2",
    "v2.10.1",
    "schema/compose-spec.json",
    "4c82f37952baa25ddc949641f5db53a23a51e0f961825509fcb485c8f85c3854",
)
RULES_HEADER = """\
# deploy/prometheus.py ALERT_RULES, generated: `python -m deploy.compose.validate --write-rules`
# (the validator fails while this file differs from ALERT_RULES).
"""

_VARIABLE = re.compile(r"\$(?:\$|\{(\w+)(?:(:?[-?])([^}]*))?\}|(\w+))")


class InterpolationError(ValueError):
    """A required variable is unset (``${VAR:?message}``)."""


def read_env(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of an env file (comments and blank lines skipped, no quoting)."""
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value
    return env


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """The value with Compose's variable syntax replaced, recursively."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2), match.group(3) or ""
        current = env.get(name)
        unset = current is None or (operator is not None and operator.startswith(":")
                                    and current == "")  # fmt: skip
        if operator is not None and operator.endswith("?") and unset:
            raise InterpolationError(f"${{{name}}}: {argument or 'required'}")
        if operator is not None and operator.endswith("-") and unset:
            return argument
        return current or ""

    return _VARIABLE.sub(substitute, value)


def load(compose_file: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """The compose file as Compose sees it: YAML merge keys resolved, variables interpolated."""
    raw = yaml.safe_load(compose_file.read_text(encoding="utf-8"))
    loaded: dict[str, Any] = interpolate(raw, env)
    return loaded


def schema_errors(project: Mapping[str, Any]) -> list[str]:
    """Errors against the Compose Specification's schema (draft-07)."""
    schema = yaml.safe_load(pinned_file(COMPOSE_SCHEMA))
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in sorted(validator.iter_errors(project), key=lambda e: list(e.absolute_path))
    ]


def _volume_sources(service: Mapping[str, Any]) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        sources.append(volume.split(":")[0] if isinstance(volume, str) else volume["source"])
    return sources


def reference_errors(project: Mapping[str, Any], root: Path) -> list[str]:
    """Services, volumes, bind mounts, image tags and scrape targets that do not add up."""
    services: Mapping[str, Any] = project.get("services", {})
    volumes = set(project.get("volumes") or {})
    errors = []
    for name, service in services.items():
        errors += [f"{name}: depends on unknown service {dep}"
                   for dep in service.get("depends_on", []) if dep not in services]  # fmt: skip
        for source in _volume_sources(service):
            if source.startswith((".", "/")):
                if not (root / source).exists():
                    errors.append(f"{name}: bind mount {source} does not exist")
            elif source not in volumes:
                errors.append(f"{name}: volume {source} is not declared")
        image = service.get("image", "")
        if not re.fullmatch(r"[^:@]+(:[\w][\w.-]*|@sha256:[0-9a-f]{64})", image.split("/")[-1]):
            errors.append(f"{name}: image {image!r} is not pinned to a tag")
        elif image.endswith(":latest"):
            errors.append(f"{name}: image {image!r} is pinned to latest")
    return errors


def prometheus_errors(project: Mapping[str, Any], root: Path) -> list[str]:
    """Prometheus scrapes services of this project; its rules are ALERT_RULES."""
    errors = []
    config = yaml.safe_load((root / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    for job in config["scrape_configs"]:
        for target in (t for s in job.get("static_configs", []) for t in s["targets"]):
            if target.split(":")[0] not in project.get("services", {}):
                errors.append(f"prometheus job {job['job_name']} scrapes unknown host {target}")
    if yaml.safe_load((root / "prometheus" / "rules.yml").read_text()) != ALERT_RULES:
        errors.append("prometheus/rules.yml differs from deploy.prometheus.ALERT_RULES: run "
                      "python -m deploy.compose.validate --write-rules")  # fmt: skip
    promtool = shutil.which("promtool")
    if promtool is None:
        return [*errors, "promtool not found (Debian package prometheus; make system-deps)"]
    checked = subprocess.run(
        [promtool, "check", "config", str(root / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    if checked.returncode != 0:
        errors.append(f"promtool check config: {(checked.stdout + checked.stderr).strip()}")
    return errors


def validate(compose_file: Path = COMPOSE_FILE, env_file: Path = EXAMPLE_ENV) -> list[str]:
    """Every error of the compose file (empty: it validates)."""
    try:
        project = load(compose_file, read_env(env_file))
    except InterpolationError as e:
        return [f"interpolation: {e}"]
    root = compose_file.parent
    errors = schema_errors(project)
    return errors + reference_errors(project, root) + prometheus_errors(project, root)


def rules_text() -> str:
    """The Prometheus rule file of the compose deployment."""
    return RULES_HEADER + yaml.safe_dump(ALERT_RULES, sort_keys=False, width=100)


def main(argv: Sequence[str] | None = None) -> int:
    """Validate (or, with ``--write-rules``, regenerate the rule file); 0 when it validates."""
    parser = argparse.ArgumentParser(prog="python -m deploy.compose.validate", description=__doc__)
    parser.add_argument("--compose-file", type=Path, default=COMPOSE_FILE)
    parser.add_argument("--env-file", type=Path, default=EXAMPLE_ENV)
    parser.add_argument("--write-rules", action="store_true", help="rewrite prometheus/rules.yml")
    args = parser.parse_args(argv)
    if args.write_rules:
        RULES_FILE.write_text(rules_text(), encoding="utf-8")
    try:
        errors = validate(args.compose_file, args.env_file)
    except SchemaUnavailable as e:
        sys.stderr.write(f"{e}\n")
        return 2
    sys.stdout.write(
        f"{args.compose_file.name}: checked against the Compose Specification "
        f"({COMPOSE_SCHEMA.label} {COMPOSE_SCHEMA.path}), {len(errors)} errors\n"
    )
    sys.stdout.write("".join(f"  ERROR {e}\n" for e in errors))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
