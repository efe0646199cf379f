"""Failpoints: only the names the code defines are accepted; an unnamed point does nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from streams.failpoints import failpoint
from streams.settings import WorkerSettings, load_settings


def test_only_defined_failpoints_are_accepted() -> None:
    assert WorkerSettings(failpoints=("alert_sent",)).failpoints == ("alert_sent",)
    with pytest.raises(ValidationError):
        WorkerSettings(failpoints=("alert_snet",))  # a typo must not silently test nothing


def test_the_environment_names_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTRIAGE_WORKER__FAILPOINTS", '["alert_written_ahead"]')
    assert load_settings().worker.failpoints == ("alert_written_ahead",)


def test_a_point_not_named_does_nothing_and_a_named_one_kills() -> None:
    failpoint(WorkerSettings(), "alert_sent")  # still here
    code = (
        "from streams.failpoints import failpoint\n"
        "from streams.settings import WorkerSettings\n"
        "failpoint(WorkerSettings(failpoints=('alert_sent',)), 'alert_sent')\n"
        "print('survived')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, env=os.environ)
    assert done.returncode == -9 and b"survived" not in done.stdout
