"""UIDs from untrusted DICOM: kept as they arrive unless hostile, and never used as a path.

A conformant DICOM UID is digits and dots, each component without leading zeros, at most 64
characters (PS3.5 section 9.1). Anonymisers in the wild write other things (UUIDs such as
``896911bf-1143-4c8d-8f04-f3cd1a7f6204``, components with leading zeros, UIDs over 64
characters). Those are accepted: the original text is what the results sent back to the PACS
reference, and storage keys are a hash of it (:func:`uid_key`), so no UID ever becomes a path.

Refused as ``hostile_uid`` is only what could escape a path or a log line, or could not be sent
back byte for byte: control characters (NUL included), path separators, ``.`` and ``..``,
characters outside ASCII, and absurd lengths (a resource bound, far above what anonymisers write).
"""

from __future__ import annotations

import hashlib
import re

from pydicom.dataset import Dataset

from inference.exceptions import SeriesRejected, SeriesRejectionReason

__all__ = [
    "CHECKED_UIDS",
    "UID_MAX_CHARS",
    "UID_MAX_ACCEPTED_CHARS",
    "check_uid",
    "is_conformant_uid",
    "nonconformant_uids",
    "uid_key",
    "uid_refusal",
]

#: DICOM's limit (PS3.5 section 9.1); longer UIDs are accepted as non-conformant.
UID_MAX_CHARS = 64
#: Longer than this is refused (resource bound: the header, the logs, the dead letters).
UID_MAX_ACCEPTED_CHARS = 1024
#: The UIDs that identify an image and end up in keys, records and the results' references.
CHECKED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_CONFORMANT = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_PATH_SEPARATORS = frozenset("/\\")
_KEY_HEX_CHARS = 32


def uid_refusal(text: str) -> str | None:
    """Why ``text`` is refused as a UID (hostile), or None when it is accepted."""
    if not text:
        return "is empty"
    if len(text) > UID_MAX_ACCEPTED_CHARS:
        return f"has {len(text)} characters (limit {UID_MAX_ACCEPTED_CHARS})"
    if not text.isascii():
        return "has characters outside ASCII"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return "has control characters"
    if _PATH_SEPARATORS.intersection(text):
        return "has a path separator"
    if text in {".", ".."}:
        return "is a relative path"
    return None


def is_conformant_uid(text: str) -> bool:
    """True for a UID as DICOM defines it (digits and dots, no leading zeros, <= 64 chars)."""
    return len(text) <= UID_MAX_CHARS and _CONFORMANT.fullmatch(text) is not None


def uid_key(uid: str) -> str:
    """The storage key of a UID: 32 hex characters of its SHA-256 (a safe file name)."""
    return hashlib.sha256(uid.encode("ascii", errors="surrogateescape")).hexdigest()[
        :_KEY_HEX_CHARS
    ]


def _text(ds: Dataset, keyword: str) -> str:
    element = ds.get_item(keyword)
    if element is None or element.value is None:
        return ""
    value = element.value
    if isinstance(value, bytes):
        # keep every byte visible to the checks: a stray NUL inside must not be stripped
        value = value.decode("latin-1")
        return value.rstrip("\x00 ")  # UI values are padded to an even length with NUL
    return str(value)


def check_uid(ds: Dataset, keyword: str) -> str:
    """The UID in ``keyword`` as stored; ``SeriesRejected`` (HOSTILE_UID) when it is hostile."""
    text = _text(ds, keyword)
    refusal = uid_refusal(text)
    if refusal is not None:
        raise SeriesRejected(
            SeriesRejectionReason.HOSTILE_UID, f"{keyword} {text[:80]!r} {refusal}"
        )
    return text


def nonconformant_uids(headers: list[Dataset] | tuple[Dataset, ...]) -> tuple[str, ...]:
    """The keywords among :data:`CHECKED_UIDS` that are not conformant in some of ``headers``."""
    return tuple(
        keyword
        for keyword in CHECKED_UIDS
        if any(not is_conformant_uid(_text(ds, keyword)) for ds in headers)
    )
