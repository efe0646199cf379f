"""The secured local broker's files and settings (no broker started: see the integration test)."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509

from deploy.kafka import render_server_properties
from deploy.kafka_security import BROKER_SUBJECT, SUPER_USER, BrokerSecurity

pytestmark = pytest.mark.unit


def test_material_is_made_once_and_kept_private(tmp_path: Path) -> None:
    security = BrokerSecurity(tmp_path, users=("ctriage-worker",))
    security.ensure_material()
    password = security.password("ctriage-worker")
    keystore = security.keystore.read_bytes()
    security.ensure_material()
    assert security.password("ctriage-worker") == password and len(password) >= 40
    assert security.keystore.read_bytes() == keystore
    for path in (security.keystore, security.password_file(SUPER_USER), tmp_path / "tls/ca.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (tmp_path / "tls", tmp_path / "users"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_the_broker_certificate_is_signed_by_the_ca_for_loopback(tmp_path: Path) -> None:
    security = BrokerSecurity(tmp_path)
    security.ensure_material()
    ca = x509.load_pem_x509_certificate(security.ca_file.read_bytes())
    pem = security.keystore.read_text()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, as Kafka's PEM store reads
    broker, chained_ca = x509.load_pem_x509_certificates(
        pem.split("-----END PRIVATE KEY-----")[1].encode()
    )
    assert chained_ca == ca
    broker.verify_directly_issued_by(ca)
    names = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert broker.subject.rfc4514_string() == BROKER_SUBJECT


def test_secured_properties_have_no_plaintext_client_listener(tmp_path: Path) -> None:
    security = BrokerSecurity(tmp_path)
    text = render_server_properties(
        19092,
        19093,
        tmp_path / "data",
        overrides=security.listener_settings(19092, 19093, "127.0.0.1"),
    )
    lines = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")
    assert lines["listeners"] == "SASL_SSL://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert lines["listener.security.protocol.map"] == "CONTROLLER:SSL,SASL_SSL:SASL_SSL"
    assert lines["listener.name.controller.ssl.client.auth"] == "required"
    assert lines["super.users"] == f"User:{SUPER_USER};User:{BROKER_SUBJECT}"
    assert lines["allow.everyone.if.no.acl.found"] == "false"
    assert "PLAINTEXT" not in lines["listener.security.protocol.map"]
