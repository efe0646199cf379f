"""Fixtures of the Kubernetes manifest tests: the rendered overlays (kubectl kustomize, offline)."""

from __future__ import annotations

from typing import Any

import pytest

from deploy.k8s.validate import OVERLAYS, render


@pytest.fixture(scope="session")
def production() -> list[dict[str, Any]]:
    """Every object of the production overlay (Strimzi + CloudNativePG + the services)."""
    return render(OVERLAYS / "production")


@pytest.fixture(scope="session")
def external_services() -> list[dict[str, Any]]:
    """Every object of the overlay that uses the hospital's own Kafka and PostgreSQL."""
    return render(OVERLAYS / "external-services")
