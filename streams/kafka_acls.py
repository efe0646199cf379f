"""Who may do what on Kafka: one principal per service, its ACLs, and how they are put in place.

The single source of the least-privilege table: the local secured broker gets exactly these ACLs
(:func:`provision`, run as the cluster admin by the launcher), and the Strimzi ``KafkaUser``
resources in ``deploy/k8s/components/strimzi/users.yaml`` are checked against them
(``tests/unit/deploy/k8s/test_manifests.py``). Topic names come from :mod:`streams.topics`.

=====================  =======================================================================
principal              may
=====================  =======================================================================
ctriage-worker         read, write, create every ctriage topic and its own (``<app id>-``)
                       changelog/internal topics; consume as the group ``<app id>``; write
                       transactions as ``<app id>-*`` (the alert ledger)
ctriage-ingest         write ``ct.studies`` and its dead letters (C-STORE receiver, poller,
                       folder ingest)
ctriage-fhir-endpoint  write ``fhir.resources`` and its dead letters; read nothing
ctriage-admin-api      read and write ``triage.config`` and ``triage.audit`` (no group)
ctriage-keda           describe the worker's group and the topics (lag for autoscaling)
=====================  =======================================================================
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kafka.errors import KafkaError

from streams import topics as t
from streams.kafka_security import KafkaSecurity

logger = logging.getLogger(__name__)

WORKER = "ctriage-worker"
INGEST = "ctriage-ingest"
FHIR_ENDPOINT = "ctriage-fhir-endpoint"
ADMIN_API = "ctriage-admin-api"
KEDA = "ctriage-keda"
#: Every service principal, in the order docs/security.md lists them.
PRINCIPALS = (WORKER, INGEST, FHIR_ENDPOINT, ADMIN_API, KEDA)

_OWN = ("Read", "Write", "Describe", "Create", "DescribeConfigs")
_PRODUCE = ("Write", "Describe")


@dataclass(frozen=True)
class Acl:
    """Allow ``operations`` on one resource (Strimzi's ``acls[]`` item, in its words)."""

    resource_type: str  # topic | group | transactionalId
    name: str
    pattern: str  # literal | prefix
    operations: tuple[str, ...]


def _topics(names: Iterable[str], operations: tuple[str, ...]) -> list[Acl]:
    return [Acl("topic", name, "literal", operations) for name in names]


def service_acls(app_id: str) -> dict[str, tuple[Acl, ...]]:
    """Principal -> its ACLs, for a worker app (and consumer group) called ``app_id``."""
    every = list(t.topic_layout(1))
    return {
        WORKER: (
            *_topics(every, _OWN),
            Acl("topic", f"{app_id}-", "prefix", _OWN),
            Acl("group", app_id, "literal", ("Read", "Describe")),
            # the alert ledger's transactional producers (``<app id>-alerts-<partition>``)
            Acl("transactionalId", f"{app_id}-", "prefix", ("Write", "Describe")),
        ),
        INGEST: tuple(_topics([t.CT_STUDIES.name, t.CT_STUDIES.dlq], _PRODUCE)),
        FHIR_ENDPOINT: tuple(_topics([t.FHIR_RESOURCES.name, t.FHIR_RESOURCES.dlq], _PRODUCE)),
        ADMIN_API: tuple(
            _topics([t.TRIAGE_CONFIG.name, t.TRIAGE_AUDIT.name], ("Read", "Write", "Describe"))
        ),
        KEDA: (
            Acl("group", app_id, "literal", ("Describe",)),
            *_topics(every, ("Describe",)),
            Acl("topic", f"{app_id}-", "prefix", ("Describe",)),
        ),
    }


_OPERATIONS = {
    "Read": ACLOperation.READ,
    "Write": ACLOperation.WRITE,
    "Describe": ACLOperation.DESCRIBE,
    "Create": ACLOperation.CREATE,
    "DescribeConfigs": ACLOperation.DESCRIBE_CONFIGS,
}
_RESOURCES = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "transactionalId": ResourceType.TRANSACTIONAL_ID,
}
_PATTERNS = {"literal": ACLResourcePatternType.LITERAL, "prefix": ACLResourcePatternType.PREFIXED}


def kafka_acls(principal: str, acls: Iterable[Acl]) -> list[ACL]:
    """The admin client's ``ACL`` objects (one per operation) of one principal."""
    return [
        ACL(
            principal=f"User:{principal}",
            host="*",
            operation=_OPERATIONS[operation],
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(
                _RESOURCES[acl.resource_type], acl.name, _PATTERNS[acl.pattern]
            ),
        )
        for acl in acls
        for operation in acl.operations
    ]


class ProvisionError(RuntimeError):
    """The broker refused a principal's credential or ACL (names which and why)."""


def provision(
    bootstrap_servers: str,
    admin: KafkaSecurity,
    passwords: Mapping[str, str],
    app_id: str,
    timeout_s: float = 30,
) -> None:
    """As the cluster admin: give each principal its SCRAM credential and its ACLs.

    Idempotent: a credential is set again to the same password (new salt), an existing ACL is
    left as it is. ``passwords`` holds the principals to provision.
    """
    client = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="ctriage-provision",
        request_timeout_ms=int(timeout_s * 1000),
        **admin.kafka_python(),
    )
    table = service_acls(app_id)
    try:
        upserts = [
            UserScramCredentialUpsertion(user, ScramMechanism.SCRAM_SHA_512, password, 8192)
            for user, password in passwords.items()
        ]
        refused = {u: why for u, why in client.alter_user_scram_credentials(upserts).items() if why}
        if refused:
            raise ProvisionError(f"SCRAM credentials refused: {refused}")
        wanted = [acl for user in passwords for acl in kafka_acls(user, table[user])]
        result = client.create_acls(wanted)
        if result["failed"]:
            raise ProvisionError(f"ACLs refused: {result['failed']}")
        logger.info("kafka: %d principals, %d ACLs in place", len(passwords), len(wanted))
    except KafkaError as e:
        raise ProvisionError(f"provisioning principals at {bootstrap_servers}: {e!r}") from e
    finally:
        client.close()
