"""Orthanc's REST API as the integration tests use it (a real server started by the fixtures)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from deploy.orthanc import OrthancServer


def orthanc(server: OrthancServer, method: str, path: str, body: bytes | None = None) -> object:
    """One REST call; the decoded JSON answer (``None`` for an empty body)."""
    request = urllib.request.Request(server.url + path, data=body, method=method)
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read() or b"null")


def upload(server: OrthancServer, folder: Path) -> str:
    """POST every file to Orthanc; return Orthanc's id of the (single) study."""
    study_ids = set()
    for file in sorted(folder.rglob("*.dcm")):
        answer = orthanc(server, "POST", "/instances", file.read_bytes())
        assert isinstance(answer, dict)
        study_ids.add(answer["ParentStudy"])
    [study_id] = study_ids
    return study_id
