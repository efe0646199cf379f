"""Bearer tokens of the admin API and its two roles; the shared-secret token scheme.

``viewer`` reads policies, operating points and the audit trail; ``threshold-admin`` may also
change a policy. Tokens come from settings (``CTRIAGE_ADMIN__TOKENS``) in clear (``SecretStr``)
or as SHA-256 hex digests; either way they are compared as digests in constant time
(:class:`DigestBook`, which the FHIR endpoint's tokens use too).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from pydantic import SecretStr

from streams.settings import AdminToken

T = TypeVar("T")


class AdminRoleValues(StrEnum):
    """Roles of the admin API (closed list)."""

    VIEWER = "viewer"
    THRESHOLD_ADMIN = "threshold-admin"

    def may_change(self) -> bool:
        """Whether this role may change a policy."""
        return self is AdminRoleValues.THRESHOLD_ADMIN


@dataclass(frozen=True)
class Principal:
    """Who made a request."""

    user: str
    role: AdminRoleValues


def token_digest(token: str) -> str:
    """SHA-256 hex digest of a token (what ``token_sha256`` holds)."""
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (None: absent or not Bearer)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class DigestBook(Generic[T]):
    """Shared-secret tokens, held as SHA-256 digests, each resolving to a value (its owner)."""

    def __init__(self) -> None:
        self._entries: list[tuple[bytes, T]] = []

    def add(self, owner: str, token: SecretStr | None, token_sha256: str | None, value: T) -> None:
        """Add a token given in clear or as its SHA-256 hex digest."""
        if token is not None:
            digest = token_digest(token.get_secret_value())
        elif token_sha256:
            digest = token_sha256.strip().lower()
        else:
            raise ValueError(f"token of {owner!r} has neither token nor digest")
        self._entries.append((digest.encode(), value))

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, token: str) -> T | None:
        """The value of a known token (None: unknown), in the same time for every token."""
        digest = token_digest(token).encode()
        found = None
        for known, value in self._entries:  # no early exit
            if hmac.compare_digest(known, digest):
                found = value
        return found


class TokenBook:
    """Resolves a bearer token to its principal."""

    def __init__(self, tokens: Iterable[AdminToken]) -> None:
        self._book: DigestBook[Principal] = DigestBook()
        for entry in tokens:
            principal = Principal(entry.user, AdminRoleValues(entry.role))
            self._book.add(entry.user, entry.token, entry.token_sha256, principal)

    def __len__(self) -> int:
        return len(self._book)

    def principal(self, authorization: str | None) -> Principal | None:
        """The principal of an ``Authorization: Bearer <token>`` header (None: unknown)."""
        token = bearer_token(authorization)
        return None if token is None else self._book.find(token)
