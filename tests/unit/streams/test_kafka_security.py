"""Client security from settings: options per client library, refusals, no password shown."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr

from deploy.kafka_security import write_certificates
from streams.kafka_security import PLAINTEXT, KafkaSecurity, KafkaSecurityError
from streams.settings import KafkaSettings

pytestmark = pytest.mark.unit

SECRET = "s3cret-never-shown"


def _secured(tmp_path: Path, **changes: object) -> KafkaSettings:
    write_certificates(tmp_path / "tls")  # a real CA, as the local launcher makes it
    ca = tmp_path / "tls" / "ca.pem"
    fields = {
        "security_protocol": "SASL_SSL",
        "sasl_username": "ctriage-worker",
        "sasl_password": SecretStr(SECRET),
        "ssl_ca_file": ca,
    } | changes
    return KafkaSettings(**fields)  # type: ignore[arg-type]


def test_plaintext_adds_no_option() -> None:
    security = KafkaSecurity.from_settings(KafkaSettings())
    assert security == PLAINTEXT
    assert security.kafka_python() == security.aiokafka() == security.faust() == {}


def test_sasl_ssl_defaults_to_scram_sha_512_and_checks_the_broker(tmp_path: Path) -> None:
    security = KafkaSecurity.from_settings(_secured(tmp_path))
    options = security.kafka_python()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "ctriage-worker"
    assert options["sasl_plain_password"] == SECRET
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def test_faust_gets_sasl_credentials_over_tls(tmp_path: Path) -> None:
    credentials = KafkaSecurity.from_settings(_secured(tmp_path)).faust()["broker_credentials"]
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert SECRET not in repr(credentials)


def test_a_file_that_holds_no_certificate_is_refused_by_name(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    security = KafkaSecurity.from_settings(_secured(tmp_path, ssl_ca_file=empty))
    with pytest.raises(KafkaSecurityError, match="SSL_CA_FILE"):
        security.kafka_python()


def test_the_password_is_never_in_a_repr(tmp_path: Path) -> None:
    settings = _secured(tmp_path)
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert SECRET not in repr(KafkaSecurity.from_settings(settings))


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"security_protocol": "TLS"}, "SECURITY_PROTOCOL"),
        ({"sasl_username": None}, "SASL_USERNAME"),
        ({"sasl_password": None}, "SASL_PASSWORD"),
        ({"sasl_mechanism": "GSSAPI"}, "SASL_MECHANISM"),
        ({"ssl_ca_file": Path("/nonexistent/ca.pem")}, "SSL_CA_FILE"),
    ],
)
def test_contradictory_settings_are_refused_by_name(
    tmp_path: Path, changes: dict[str, object], names: str
) -> None:
    with pytest.raises(KafkaSecurityError, match=names):
        KafkaSecurity.from_settings(_secured(tmp_path, **changes))
