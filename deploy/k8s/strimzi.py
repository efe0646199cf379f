"""Minimal structural schemas for the Strimzi resources ctriage uses. OURS, NOT STRIMZI'S.

Strimzi publishes its CRDs in its release archives and Helm chart, neither of which the validator
can fetch (no Go module, no YAML on Maven Central: ``io.strimzi:api`` holds Java classes only).
So the Strimzi objects are checked against these hand-written schemas, taken from Strimzi's
``v1beta2`` API reference for 0.48: required fields, types, enums and the fields we set; unknown
fields are refused only where listed here (``additionalProperties: False``). Passing them says the
manifests are shaped as we meant, not that Strimzi accepts them.
"""

from __future__ import annotations

from typing import Any

API_VERSION = "kafka.strimzi.io/v1beta2"

_CLUSTER_LABEL = {
    "type": "object",
    "required": ["labels"],
    "properties": {
        "labels": {
            "type": "object",
            "required": ["strimzi.io/cluster"],
            "properties": {"strimzi.io/cluster": {"type": "string", "minLength": 1}},
        }
    },
}

_RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"requests": {"type": "object"}, "limits": {"type": "object"}},
}

_LISTENER = {
    "type": "object",
    "required": ["name", "port", "type", "tls"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]{1,11}$"},
        "port": {"type": "integer", "minimum": 9092},
        "type": {"enum": ["internal", "route", "loadbalancer", "nodeport", "ingress",
                          "cluster-ip"]},  # fmt: skip
        "tls": {"type": "boolean"},
        "authentication": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": ["tls", "scram-sha-512", "oauth", "custom"]}},
        },
        "configuration": {"type": "object"},
        "networkPolicyPeers": {"type": "array"},
    },
}

KAFKA: dict[str, Any] = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "metadata": {
            "type": "object",
            "required": ["annotations"],
            "properties": {
                "annotations": {
                    "type": "object",
                    "required": ["strimzi.io/node-pools", "strimzi.io/kraft"],
                    "properties": {
                        "strimzi.io/node-pools": {"const": "enabled"},
                        "strimzi.io/kraft": {"const": "enabled"},
                    },
                }
            },
        },
        "spec": {
            "type": "object",
            "required": ["kafka"],
            "additionalProperties": False,
            "properties": {
                "kafka": {
                    "type": "object",
                    "required": ["listeners"],
                    "additionalProperties": False,
                    "properties": {
                        "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
                        "metadataVersion": {"type": "string"},
                        "listeners": {"type": "array", "minItems": 1, "items": _LISTENER},
                        "authorization": {
                            "type": "object",
                            "required": ["type"],
                            "properties": {"type": {"enum": ["simple", "opa", "keycloak",
                                                             "custom"]}},  # fmt: skip
                        },
                        "config": {"type": "object"},
                        "resources": _RESOURCES,
                        "template": {"type": "object"},
                        "rack": {"type": "object"},
                        "metricsConfig": {"type": "object"},
                        "logging": {"type": "object"},
                    },
                },
                "entityOperator": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "topicOperator": {"type": "object"},
                        "userOperator": {"type": "object"},
                        "template": {"type": "object"},
                    },
                },
                "kafkaExporter": {"type": "object"},
                "cruiseControl": {"type": "object"},
                "clusterCa": {"type": "object"},
                "clientsCa": {"type": "object"},
            },
        },
    },
}

KAFKA_NODE_POOL: dict[str, Any] = {
    "type": "object",
    "required": ["metadata", "spec"],
    "properties": {
        "metadata": _CLUSTER_LABEL,
        "spec": {
            "type": "object",
            "required": ["replicas", "roles", "storage"],
            "additionalProperties": False,
            "properties": {
                "replicas": {"type": "integer", "minimum": 0},
                "roles": {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": {"enum": ["controller", "broker"]},
                },
                "storage": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {"enum": ["jbod", "ephemeral", "persistent-claim"]},
                        "volumes": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["type"],
                                "additionalProperties": False,
                                "properties": {
                                    "id": {"type": "integer", "minimum": 0},
                                    "type": {"enum": ["ephemeral", "persistent-claim"]},
                                    "size": {"type": "string"},
                                    "class": {"type": "string"},
                                    "deleteClaim": {"type": "boolean"},
                                    "kraftMetadata": {"enum": ["shared"]},
                                },
                            },
                        },
                    },
                },
                "resources": _RESOURCES,
                "jvmOptions": {"type": "object"},
                "template": {"type": "object"},
            },
        },
    },
}

KAFKA_TOPIC: dict[str, Any] = {
    "type": "object",
    "required": ["metadata", "spec"],
    "properties": {
        "metadata": _CLUSTER_LABEL,
        "spec": {
            "type": "object",
            "required": ["partitions", "replicas"],
            "additionalProperties": False,
            "properties": {
                "topicName": {"type": "string", "pattern": r"^[a-zA-Z0-9._-]{1,249}$"},
                "partitions": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                "config": {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "integer", "number", "boolean"]},
                },
            },
        },
    },
}

_ACL = {
    "type": "object",
    "required": ["resource", "operations"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["allow", "deny"]},
        "host": {"type": "string"},
        "resource": {
            "type": "object",
            "required": ["type"],
            "additionalProperties": False,
            "properties": {
                "type": {"enum": ["topic", "group", "cluster", "transactionalId"]},
                "name": {"type": "string", "minLength": 1},
                "patternType": {"enum": ["literal", "prefix"]},
            },
        },
        "operations": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {
                "enum": ["Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction",
                         "AlterConfigs", "DescribeConfigs", "IdempotentWrite", "All"]
            },  # fmt: skip
        },
    },
}

KAFKA_USER: dict[str, Any] = {
    "type": "object",
    "required": ["metadata", "spec"],
    "properties": {
        "metadata": _CLUSTER_LABEL,
        "spec": {
            "type": "object",
            "required": ["authentication"],
            "additionalProperties": False,
            "properties": {
                "authentication": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {"type": {"enum": ["tls", "tls-external", "scram-sha-512"]}},
                },
                "authorization": {
                    "type": "object",
                    "required": ["type", "acls"],
                    "additionalProperties": False,
                    "properties": {
                        "type": {"const": "simple"},
                        "acls": {"type": "array", "items": _ACL},
                    },
                },
                "quotas": {"type": "object"},
                "template": {"type": "object"},
            },
        },
    },
}

#: kind -> our minimal schema of that Strimzi resource (API version :data:`API_VERSION`).
SCHEMAS: dict[str, dict[str, Any]] = {
    "Kafka": KAFKA,
    "KafkaNodePool": KAFKA_NODE_POOL,
    "KafkaTopic": KAFKA_TOPIC,
    "KafkaUser": KAFKA_USER,
}
