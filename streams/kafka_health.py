"""Is a Kafka broker serving clients? The readiness probe handed to :mod:`deploy`'s launcher.

``deploy`` starts the broker but knows no Kafka client; this round trip (an admin metadata
request) is what "ready" means for the stream layer, so the stream layer supplies it.
"""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from streams.kafka_security import PLAINTEXT, KafkaSecurity


def broker_answers(
    bootstrap_servers: str, timeout_ms: int = 5000, security: KafkaSecurity = PLAINTEXT
) -> bool:
    """True when the cluster answers an admin ``list_topics()`` round trip (as ``security``)."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id="ctriage-health",
            request_timeout_ms=timeout_ms,
            # a refused login (or TLS handshake) is retried until this bootstrap wait ends
            bootstrap_timeout_ms=timeout_ms,
            **security.kafka_python(),
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()
