"""Who may POST to the FHIR endpoint: bearer tokens and SMART Backend Services scopes.

A client authenticates with ``Authorization: Bearer <token>``, where the token is either

- a shared secret listed in ``CTRIAGE_FHIR__TOKENS`` (in clear or as its SHA-256, the admin
  API's scheme: :class:`streams.admin.auth.DigestBook`), with the client's scopes; or
- a JWT (the access token a SMART Backend Services authorisation server issues) signed with
  a configured HS256 secret or RS256/ES256 public key, with ``exp`` (and ``iss`` / ``aud`` when
  configured); its scopes are the ``scope`` claim (space-separated) or ``scp``.

Scopes are per resource type: ``system/Observation.write`` (SMART v1), ``system/Observation.c``
or any v2 permission string holding ``c`` (``cud``, ``cruds``), and ``*`` for every type or
permission (``system/*.write``). Every posted resource is a *create*. A v2 scope restricted by a
query (``system/Observation.c?category=...``) grants nothing here: it cannot be enforced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import SecretStr

from streams.admin.auth import DigestBook, bearer_token
from streams.settings import FhirSettings, FhirToken
from streams.sources.refusals import IngressRefusalValues

MIN_HS256_SECRET_BYTES = 32
_V2_PERMISSIONS = re.compile(r"c?r?u?d?s?")
_HS = "HS256"
_ASYMMETRIC = {"RS256": rsa.RSAPublicKey, "ES256": ec.EllipticCurvePublicKey}


@dataclass(frozen=True)
class FhirClient:
    """An authenticated sender and the scopes it holds."""

    name: str
    scopes: frozenset[str]

    def may_create(self, resource_type: str) -> bool:
        """Whether one of the scopes lets this client create ``resource_type`` resources."""
        return any(_grants_create(scope, resource_type) for scope in self.scopes)

    def may_create_any(self) -> bool:
        """Whether this client may create resources of some type at all."""
        return any(_grants_create(scope, None) for scope in self.scopes)


class AuthRefused(Exception):
    """A request without a valid token (401) or without the scope it needs (403)."""

    def __init__(self, reason: IngressRefusalValues, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail

    @property
    def status(self) -> int:
        """The HTTP status: 403 for a missing scope, 401 otherwise."""
        return 403 if self.reason is IngressRefusalValues.INSUFFICIENT_SCOPE else 401


def _grants_create(scope: str, resource_type: str | None) -> bool:
    """Whether one scope grants *create* on ``resource_type`` (None: on some type)."""
    if "?" in scope:
        return False
    context, _, rest = scope.partition("/")
    target, _, permission = rest.rpartition(".")
    if context != "system" or not target:
        return False
    if resource_type is not None and target not in (resource_type, "*"):
        return False
    if permission in ("write", "*"):
        return True
    return "c" in permission and _V2_PERMISSIONS.fullmatch(permission) is not None


class FhirAuthenticator:
    """Resolves an ``Authorization`` header to a :class:`FhirClient` or refuses it."""

    def __init__(
        self,
        tokens: Iterable[FhirToken] = (),
        hs256_secrets: Iterable[SecretStr] = (),
        public_keys: Iterable[bytes] = (),
        issuer: str | None = None,
        audience: str | None = None,
        leeway_s: float = 30.0,
    ) -> None:
        self._book: DigestBook[FhirClient] = DigestBook()
        for entry in tokens:
            client = FhirClient(entry.client, frozenset(entry.scopes))
            self._book.add(entry.client, entry.token, entry.token_sha256, client)
        self._secrets = [s.get_secret_value().encode() for s in hs256_secrets]
        if any(len(secret) < MIN_HS256_SECRET_BYTES for secret in self._secrets):
            raise ValueError(
                f"an HS256 secret needs at least {MIN_HS256_SECRET_BYTES} bytes (RFC 7518 3.2)"
            )
        self._public = [load_pem_public_key(pem) for pem in public_keys]
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s

    @classmethod
    def from_settings(cls, fhir: FhirSettings) -> FhirAuthenticator:
        """The authenticator of ``CTRIAGE_FHIR__*`` (reads the public key files)."""
        return cls(
            fhir.tokens,
            fhir.jwt_hs256_secrets,
            [path.read_bytes() for path in fhir.jwt_public_keys],
            fhir.jwt_issuer,
            fhir.jwt_audience,
            fhir.jwt_leeway_s,
        )

    @property
    def configured(self) -> bool:
        """Whether any credential is configured (without one, every request is refused)."""
        return bool(len(self._book) or self._secrets or self._public)

    def client(self, authorization: str | None) -> FhirClient:
        """The client of a request; raises :class:`AuthRefused` (401) without a valid token."""
        token = bearer_token(authorization)
        if token is None:
            raise AuthRefused(
                IngressRefusalValues.MISSING_TOKEN, "send Authorization: Bearer <token>"
            )
        known = self._book.find(token)
        if known is not None:
            return known
        if token.count(".") == 2 and (self._secrets or self._public):
            return self._jwt_client(token)
        raise AuthRefused(IngressRefusalValues.INVALID_TOKEN, "token not known to this server")

    def _jwt_client(self, token: str) -> FhirClient:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError as e:
            raise AuthRefused(IngressRefusalValues.INVALID_TOKEN, f"not a JWT: {e}") from e
        if algorithm == _HS:
            keys: list[Any] = list(self._secrets)
        elif algorithm in _ASYMMETRIC:
            keys = [k for k in self._public if isinstance(k, _ASYMMETRIC[algorithm])]
        else:
            detail = f"JWT algorithm {str(algorithm)[:20]!r} is not HS256, RS256 or ES256"
            raise AuthRefused(IngressRefusalValues.INVALID_TOKEN, detail)
        for key in keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[str(algorithm)],
                    issuer=self.issuer,
                    audience=self.audience,
                    leeway=self.leeway_s,
                    options=self._options(),
                )
            except jwt.InvalidSignatureError:
                continue  # the next key may have signed it
            except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError) as e:
                raise AuthRefused(IngressRefusalValues.EXPIRED_TOKEN, str(e)) from e
            except jwt.InvalidTokenError as e:
                raise AuthRefused(IngressRefusalValues.INVALID_TOKEN, str(e)) from e
            return _client_of(claims)
        detail = f"{algorithm} signature matches no configured key"
        raise AuthRefused(IngressRefusalValues.INVALID_TOKEN, detail)

    def _options(self) -> Any:  # PyJWT's Options TypedDict
        required = ["exp"] + (["iss"] if self.issuer else []) + (["aud"] if self.audience else [])
        return {"require": required, "verify_aud": self.audience is not None}


def _client_of(claims: dict[str, Any]) -> FhirClient:
    scopes = claims.get("scope") or claims.get("scp") or ""
    if isinstance(scopes, str):
        scopes = scopes.split()
    name = claims.get("client_id") or claims.get("sub") or "jwt-client"
    return FhirClient(str(name)[:100], frozenset(str(s) for s in scopes))
