"""A secured local Kafka: TLS certificates, SCRAM passwords and the listener settings.

With :class:`BrokerSecurity` a local broker (or every node of a local cluster) serves clients on a
``SASL_SSL`` listener only (TLS 1.2+, SCRAM-SHA-512), authorises with KRaft's
``StandardAuthorizer`` (nothing is allowed without an ACL) and knows one super user, the
launcher's admin principal. The controller listener (loopback only) speaks TLS with client
certificates: only a holder of the broker's key may talk to the quorum.

Layout under ``home`` (the broker's run dir, or the cluster's, shared by its nodes)::

    tls/ca.pem  tls/ca.key          a CA made here (10 years), signs the broker certificate
    tls/broker.pem                  the broker's key (PKCS#8) and certificate chain (PEM keystore)
    users/<principal>.password      one random password per principal (0600 in a 0700 folder)

The launcher knows no Kafka client: the caller's ``provision`` hook (``streams.kafka_acls``) is
called once the broker answers, to give each service principal its credential and its ACLs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The listener clients use when the broker is secured (the plain one is ``PLAINTEXT``).
SECURED_LISTENER = "SASL_SSL"
MECHANISM = "SCRAM-SHA-512"
#: The launcher's principal: a super user, used for provisioning and by the brokers themselves.
SUPER_USER = "ctriage-admin"
#: The broker certificate's subject: its principal on the controller listener (a super user).
BROKER_SUBJECT = "CN=ctriage-broker"
_VALID_DAYS = 3650


@dataclass(frozen=True)
class BrokerSecurity:
    """Where a secured local broker keeps its key material, and whom it provisions."""

    home: Path
    #: service principals provisioned once the broker answers (the super user always exists)
    users: tuple[str, ...] = ()
    #: ``provision(security, bootstrap_servers)``, called by the launcher after every start
    provision: Callable[[BrokerSecurity, str], None] | None = None

    @property
    def ca_file(self) -> Path:
        """The CA certificate clients trust (``CTRIAGE_KAFKA__SSL_CA_FILE``)."""
        return self.home / "tls" / "ca.pem"

    @property
    def keystore(self) -> Path:
        """The broker's PEM keystore: private key, then its certificate and the CA's."""
        return self.home / "tls" / "broker.pem"

    def password_file(self, user: str) -> Path:
        """Where ``user``'s password is kept (readable by the owner only)."""
        return self.home / "users" / f"{user}.password"

    def password(self, user: str) -> str:
        """``user``'s password; made (random, 256 bits) the first time it is asked for."""
        path = self.password_file(user)
        if not path.is_file():
            _private_dir(path.parent)
            _write_private(path, secrets.token_urlsafe(32))
        return path.read_text(encoding="utf-8").strip()

    def passwords(self) -> dict[str, str]:
        """Every service principal's password (the super user's not included)."""
        return {user: self.password(user) for user in self.users}

    def ensure_material(self) -> None:
        """Make the CA, the broker certificate and every password that does not exist yet."""
        if not (self.keystore.is_file() and self.ca_file.is_file()):
            write_certificates(self.home / "tls")
        self.password(SUPER_USER)
        self.passwords()

    def listener_settings(self, port: int, controller_port: int, host: str) -> dict[str, str]:
        """server.properties entries that replace the PLAINTEXT listeners."""
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{SUPER_USER}" password="{self.password(SUPER_USER)}";'
        )
        return {
            "listeners": f"{SECURED_LISTENER}://{host}:{port},CONTROLLER://{host}:{controller_port}",
            "advertised.listeners": f"{SECURED_LISTENER}://{host}:{port}",
            "inter.broker.listener.name": SECURED_LISTENER,
            "listener.security.protocol.map": f"CONTROLLER:SSL,{SECURED_LISTENER}:SASL_SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            # the brokers' own (inter-broker) login; the file is written 0600
            f"listener.name.{SECURED_LISTENER.lower()}.{MECHANISM.lower()}.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
            "ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
            # the quorum: a client certificate signed by our CA, i.e. the broker's own key
            "listener.name.controller.ssl.client.auth": "required",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{SUPER_USER};User:{BROKER_SUBJECT}",
        }

    def format_arguments(self) -> list[str]:
        """StorageTool options creating the super user's SCRAM credential in the metadata.

        The brokers log in with it before any ACL or credential can be written over the wire.
        """
        return [f"--add-scram={MECHANISM}=[name={SUPER_USER},password={self.password(SUPER_USER)}]"]


def write_certificates(folder: Path, host: str = "127.0.0.1") -> None:
    """A new CA and a broker certificate for ``host`` and ``localhost`` (RSA 2048, SHA-256)."""
    _private_dir(folder)
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ctriage local Kafka CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BROKER_SUBJECT[3:])])
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(host))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # a server to clients, a client to the controller quorum
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    plain = serialization.NoEncryption()
    _write_private(folder / "ca.key", ca_key.private_bytes(pem, pkcs8, plain).decode())
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    _write_private(
        folder / "broker.pem",
        (key.private_bytes(pem, pkcs8, plain) + cert.public_bytes(pem) + ca.public_bytes(pem))
        .decode(),
    )  # fmt: skip


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only (created 0600, never briefly wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    path.chmod(0o600)
