"""How every Kafka client of ctriage connects: one place turns :class:`KafkaSettings` into options.

kafka-python (producers, consumers, admin clients), aiokafka (the admin API's policy log, the
worker's config reader) and Faust (the worker) each spell TLS and SASL differently; a client never
spells them itself but asks :class:`KafkaSecurity` for its options::

    security = KafkaSecurity.from_settings(settings.kafka)
    KafkaProducer(bootstrap_servers=..., **security.kafka_python())

Each service runs as its own principal (``CTRIAGE_KAFKA__SASL_USERNAME`` /
``CTRIAGE_KAFKA__SASL_PASSWORD`` in its own environment; docs/security.md lists who is who). The
password stays a ``SecretStr`` until the moment a client library is handed it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

if TYPE_CHECKING:
    from streams.settings import KafkaSettings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
#: The mechanism when SASL is on and none is named (Strimzi's and our local broker's).
DEFAULT_MECHANISM = "SCRAM-SHA-512"


class KafkaSecurityError(ValueError):
    """The Kafka security settings contradict each other (the message names them)."""


@dataclass(frozen=True)
class KafkaSecurity:
    """Protocol, SASL principal and CA of one client; ``PLAINTEXT`` (the default) has none."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    #: PEM bundle of the CA that signs the brokers' certificates (None: the system's CAs)
    ca_file: Path | None = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise KafkaSecurityError(
                f"CTRIAGE_KAFKA__SECURITY_PROTOCOL={self.protocol!r}: one of {', '.join(PROTOCOLS)}"
            )
        if self.sasl:
            if self.mechanism not in MECHANISMS:
                raise KafkaSecurityError(
                    f"CTRIAGE_KAFKA__SASL_MECHANISM={self.mechanism!r}: one of "
                    f"{', '.join(MECHANISMS)}"
                )
            if not self.username or self.password is None:
                raise KafkaSecurityError(
                    f"{self.protocol} needs CTRIAGE_KAFKA__SASL_USERNAME and "
                    "CTRIAGE_KAFKA__SASL_PASSWORD (the service's own principal)"
                )
        if self.ca_file is not None and not self.ca_file.is_file():
            raise KafkaSecurityError(f"CTRIAGE_KAFKA__SSL_CA_FILE={self.ca_file}: no such file")

    @classmethod
    def from_settings(cls, kafka: KafkaSettings) -> KafkaSecurity:
        """The client security ``kafka`` describes (raises :class:`KafkaSecurityError`)."""
        sasl = kafka.security_protocol.startswith("SASL_")
        return cls(
            protocol=kafka.security_protocol,
            mechanism=(kafka.sasl_mechanism or DEFAULT_MECHANISM) if sasl else None,
            username=kafka.sasl_username if sasl else None,
            password=kafka.sasl_password if sasl else None,
            ca_file=kafka.ssl_ca_file,
        )

    @property
    def sasl(self) -> bool:
        """Whether the client authenticates with SASL."""
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted (and the broker's certificate checked)."""
        return self.protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A context that checks the broker's certificate and host name (None without TLS)."""
        if not self.tls:
            return None
        try:
            return ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None else None
            )
        except ssl.SSLError as e:
            raise KafkaSecurityError(
                f"CTRIAGE_KAFKA__SSL_CA_FILE={self.ca_file}: no PEM certificate read ({e})"
            ) from e

    def _secret(self) -> str | None:
        return self.password.get_secret_value() if self.password is not None else None

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's ``KafkaProducer``/``KafkaConsumer``/admin client."""
        if self.protocol == "PLAINTEXT":
            return {}
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options |= {"ssl_context": self.ssl_context()}
        if self.sasl:
            options |= {
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self._secret(),
            }
        return options

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's ``AIOKafkaProducer``/``AIOKafkaConsumer``."""
        # the same names as kafka-python's, from which aiokafka was forked
        return self.kafka_python()

    def faust(self) -> dict[str, Any]:
        """Keyword arguments for ``faust.App`` (``broker_credentials``; none for PLAINTEXT)."""
        import faust

        if self.sasl:
            credentials: Any = faust.SASLCredentials(
                username=self.username,
                password=self._secret(),
                ssl_context=self.ssl_context(),
                mechanism=self.mechanism,
            )
            if not self.tls:  # faust infers SASL_SSL from a context; SASL_PLAINTEXT has none
                credentials.protocol = faust.types.auth.AuthProtocol.SASL_PLAINTEXT
            return {"broker_credentials": credentials}
        if self.tls:
            return {"broker_credentials": faust.SSLCredentials(self.ssl_context())}
        return {}


#: No TLS, no SASL: the local demo broker and the test broker.
PLAINTEXT = KafkaSecurity()
