"""Bearer tokens of the admin API and its two roles.

``viewer`` reads policies, operating points and the audit trail; ``threshold-admin`` may also
change a policy. Tokens come from settings (``CTRIAGE_ADMIN__TOKENS``) in clear (``SecretStr``)
or as SHA-256 hex digests; either way they are compared as digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from streams.settings import AdminToken


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


class TokenBook:
    """Resolves a bearer token to its principal."""

    def __init__(self, tokens: Iterable[AdminToken]) -> None:
        self._entries: list[tuple[bytes, Principal]] = []
        for entry in tokens:
            if entry.token is not None:
                digest = token_digest(entry.token.get_secret_value())
            elif entry.token_sha256:
                digest = entry.token_sha256.strip().lower()
            else:
                raise ValueError(f"admin token of {entry.user!r} has neither token nor digest")
            self._entries.append(
                (digest.encode(), Principal(entry.user, AdminRoleValues(entry.role)))
            )

    def __len__(self) -> int:
        return len(self._entries)

    def principal(self, authorization: str | None) -> Principal | None:
        """The principal of an ``Authorization: Bearer <token>`` header (None: unknown)."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = token_digest(token.strip()).encode()
        found = None
        for known, principal in self._entries:  # no early exit: same time for every token
            if hmac.compare_digest(known, digest):
                found = principal
        return found
