"""Claim checks: the ``file://`` URIs that events carry instead of pixels, back to local paths.

A ``ct.studies`` event points to a study folder (:mod:`streams.sources.study_store`); a
quantification may point to the model's masks (:mod:`inference.masks`). The quantify and the
PACS write-back agents resolve them here; what cannot be resolved is a typed
:class:`StudyUnavailable` that they dead-letter.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from streams.dlq import StreamReason


class StudyUnavailable(Exception):
    """The claim check does not point to a readable study."""

    def __init__(self, reason: StreamReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def uri_path(uri: str) -> Path:
    """The local path of a ``file://`` claim check; other schemes are not served yet."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise StudyUnavailable(StreamReason.UNSUPPORTED_URI, f"unsupported claim check {uri!r}")
    return Path(unquote(parsed.path))


def study_path(study_uri: str) -> Path:
    """Resolve a ``file://`` claim check to a study folder."""
    path = uri_path(study_uri)
    if not path.is_dir():
        raise StudyUnavailable(StreamReason.STUDY_NOT_FOUND, f"no study folder at {path}")
    return path
