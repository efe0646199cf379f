"""Who may POST FHIR: shared-secret tokens, signed JWTs (HS256, RS256, ES256) and SMART scopes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr

from streams.settings import FhirSettings, FhirToken, settings_env
from streams.sources.fhir_auth import AuthRefused, FhirAuthenticator, FhirClient
from streams.sources.refusals import IngressRefusalValues as R

pytestmark = pytest.mark.unit

SECRET = "hs256-secret-for-unit-tests-only-0123456789"
ISSUER = "https://auth.hospital.example"
AUDIENCE = "https://ctriage.hospital.example/fhir"


def _pem(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _hs256_with(secret: bytes, payload: dict[str, Any]) -> str:
    """A JWT HMAC-signed with any bytes (PyJWT itself refuses a PEM key as an HMAC secret)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "interface-engine",
        "exp": now + 300,
        "iat": now,
        "scope": "system/Observation.write system/Patient.c",
    }
    return {**base, **overrides}


def authenticator(**kwargs: Any) -> FhirAuthenticator:
    defaults: dict[str, Any] = {
        "hs256_secrets": [SecretStr(SECRET)],
        "public_keys": [_pem(RSA_KEY), _pem(EC_KEY)],
        "issuer": ISSUER,
        "audience": AUDIENCE,
    }
    return FhirAuthenticator(**{**defaults, **kwargs})


def refusal(auth: FhirAuthenticator, header: str | None) -> R:
    with pytest.raises(AuthRefused) as info:
        auth.client(header)
    assert info.value.status == 401
    return info.value.reason


@pytest.mark.parametrize(
    ("scope", "rtype", "allowed"),
    [
        ("system/Observation.write", "Observation", True),
        ("system/Observation.write", "Patient", False),
        ("system/*.write", "MedicationRequest", True),
        ("system/Observation.*", "Observation", True),
        ("system/*.*", "Condition", True),
        ("system/Observation.c", "Observation", True),  # SMART v2
        ("system/Observation.cud", "Observation", True),
        ("system/Observation.cruds", "Observation", True),
        ("system/Observation.rs", "Observation", False),  # v2 read/search only
        ("system/Observation.read", "Observation", False),
        ("system/Observation.dc", "Observation", False),  # v2 letters out of order: not a scope
        ("system/Observation.c?category=vital-signs", "Observation", False),  # cannot enforce
        ("patient/Observation.write", "Observation", False),  # not system-to-system
        ("user/*.write", "Observation", False),
        ("launch/patient", "Patient", False),
        ("system/Observation.write", "ObservationDefinition", False),
    ],
)
def test_scopes_per_resource_type(scope: str, rtype: str, allowed: bool) -> None:
    assert FhirClient("c", frozenset({scope})).may_create(rtype) is allowed


def test_shared_secret_tokens_in_clear_or_as_digest() -> None:
    auth = FhirAuthenticator(
        [
            FhirToken(client="lab", scopes=("system/Observation.write",), token="lab-token-1"),
            FhirToken(
                client="adt",
                scopes=("system/Patient.write", "system/Encounter.write"),
                token_sha256=hashlib.sha256(b"adt-token-2").hexdigest(),
            ),
        ]
    )
    assert auth.configured
    lab = auth.client("Bearer lab-token-1")
    assert lab.name == "lab" and lab.may_create("Observation") and not lab.may_create("Patient")
    assert auth.client("bearer adt-token-2").may_create("Encounter")
    assert refusal(auth, None) is R.MISSING_TOKEN
    assert refusal(auth, "Basic bGFiOmxhYi10b2tlbi0x") is R.MISSING_TOKEN
    assert refusal(auth, "Bearer lab-token-2") is R.INVALID_TOKEN
    assert not FhirAuthenticator().configured


@pytest.mark.parametrize(
    ("key", "algorithm"), [(SECRET, "HS256"), (RSA_KEY, "RS256"), (EC_KEY, "ES256")]
)
def test_signed_jwts_carry_their_client_and_scopes(key: Any, algorithm: str) -> None:
    token = jwt.encode(claims(), key, algorithm=algorithm)
    client = authenticator().client(f"Bearer {token}")
    assert client.name == "interface-engine"
    assert client.may_create("Observation") and client.may_create("Patient")
    assert not client.may_create("Condition")
    listed = jwt.encode(claims(scope=None, scp=["system/*.write"], client_id="lis"), key, algorithm)
    client = authenticator().client(f"Bearer {listed}")
    assert client.name == "lis" and client.may_create("Condition")


def test_bad_jwts_are_refused_with_their_reason() -> None:
    auth = authenticator()

    def bearer(token: str) -> str:
        return f"Bearer {token}"

    expired = jwt.encode(claims(exp=int(time.time()) - 3600), SECRET, "HS256")
    assert refusal(auth, bearer(expired)) is R.EXPIRED_TOKEN
    early = jwt.encode(claims(nbf=int(time.time()) + 3600), SECRET, "HS256")
    assert refusal(auth, bearer(early)) is R.EXPIRED_TOKEN
    invalid = [
        jwt.encode(claims(), "another-secret-of-enough-length-000000", "HS256"),
        jwt.encode(claims(), OTHER_RSA, "RS256"),  # a key we do not know
        jwt.encode(claims(iss="https://evil.example"), SECRET, "HS256"),
        jwt.encode(claims(aud="https://other.example"), SECRET, "HS256"),
        jwt.encode({k: v for k, v in claims().items() if k != "exp"}, SECRET, "HS256"),
        jwt.encode(claims(), None, "none"),  # unsigned
        jwt.encode(claims(), RSA_KEY, "RS512"),  # not an accepted algorithm
        "a.b.c",
    ]
    for token in invalid:
        assert refusal(auth, bearer(token)) is R.INVALID_TOKEN, token
    # algorithm confusion: HS256 "signed" with the RSA public key (which a sender may know)
    assert refusal(auth, bearer(_hs256_with(_pem(RSA_KEY), claims()))) is R.INVALID_TOKEN
    with pytest.raises(ValueError, match="at least 32 bytes"):
        FhirAuthenticator(hs256_secrets=[SecretStr("short")])
    no_jwt_keys = FhirAuthenticator([FhirToken(client="x", scopes=(), token="t")])
    assert refusal(no_jwt_keys, bearer(jwt.encode(claims(), SECRET, "HS256"))) is R.INVALID_TOKEN


def test_settings_carry_credentials_to_a_child_and_keep_them_secret(tmp_path: Any) -> None:
    key_file = tmp_path / "issuer.pem"
    key_file.write_bytes(_pem(RSA_KEY))
    fhir = FhirSettings(
        tokens=(FhirToken(client="lab", scopes=("system/*.write",), token="lab-token-1"),),
        jwt_hs256_secrets=(SecretStr(SECRET),),
        jwt_public_keys=(key_file,),
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    assert SECRET not in repr(fhir) and "lab-token-1" not in repr(fhir)
    auth = FhirAuthenticator.from_settings(fhir)
    token = jwt.encode(claims(), RSA_KEY, "RS256")
    assert auth.client(f"Bearer {token}").name == "interface-engine"
    from streams.settings import Settings

    env = settings_env(Settings(fhir=fhir))
    assert SECRET in env["CTRIAGE_FHIR__JWT_HS256_SECRETS"]
    assert str(key_file) in env["CTRIAGE_FHIR__JWT_PUBLIC_KEYS"]
