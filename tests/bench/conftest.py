"""Benchmarks write their numbers as JSON here, with the machine they ran on."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


@pytest.fixture
def record_result():
    """Write a benchmark's numbers to tests/bench/results/<name>.json and print them."""

    def write(name: str, numbers: dict[str, Any]) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        payload = {
            "benchmark": name,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(),
            **numbers,
        }
        path = RESULTS / f"{name}.json"
        path.write_text(json.dumps(payload, indent=2) + "\n")
        print(json.dumps(payload, indent=2))
        return path

    return write
