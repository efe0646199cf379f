"""Is a Kafka broker serving clients? The readiness probe handed to :mod:`deploy`'s launcher.

``deploy`` starts the broker but knows no Kafka client; this round trip (an admin metadata
request) is what "ready" means for the stream layer, so the stream layer supplies it.
"""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.errors import KafkaError


def broker_answers(bootstrap_servers: str, timeout_ms: int = 5000) -> bool:
    """True when the cluster answers an admin ``list_topics()`` round trip."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id="ctriage-health",
            request_timeout_ms=timeout_ms,
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
