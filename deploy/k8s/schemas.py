"""Where each object's schema comes from: Kubernetes, the operators' CRDs, our Strimzi stand-in.

- Core Kubernetes kinds: the official OpenAPI schemas as packaged by ``kubernetes-validate``
  (strict variant: an unknown field is an error), for :data:`KUBERNETES_VERSION`.
- KEDA, prometheus-operator and CloudNativePG kinds: the CRD files inside those projects' Go
  modules at pinned versions, fetched with ``go mod download`` (the Go module proxy and checksum
  database vouch for the archive; the SHA-256 of each file is pinned here as well). The CRD's
  ``openAPIV3Schema`` is made strict the way the API server prunes: an object with ``properties``
  and neither ``additionalProperties`` nor ``x-kubernetes-preserve-unknown-fields`` accepts no
  other field. Their ``metadata`` is checked against Kubernetes' ``ObjectMeta``.
- Strimzi kinds: :mod:`deploy.k8s.strimzi`, minimal schemas we wrote (see there why).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils

from deploy.k8s import strimzi

_KV_VERSION = kubernetes_validate.__version__

#: The Kubernetes minor version whose schemas the manifests must satisfy.
KUBERNETES_VERSION = "1.33"


class SchemaUnavailable(RuntimeError):
    """A schema could not be obtained (Go missing, module not fetched, file changed)."""


@dataclass(frozen=True)
class CrdSource:
    """One CRD file inside a Go module at a pinned version, with the file's SHA-256."""

    module: str
    version: str
    path: str
    sha256: str

    @property
    def label(self) -> str:
        """Where the schema comes from, as the report prints it."""
        return f"{self.module}@{self.version}"


KEDA_MODULE = ("github.com/kedacore/keda/v2", "v2.20.2")
_PROMETHEUS_OPERATOR = ("github.com/prometheus-operator/prometheus-operator", "v0.85.0")
_CNPG = ("github.com/cloudnative-pg/cloudnative-pg", "v1.27.0")

#: (apiVersion, kind) -> the CRD that defines it.
CRDS: dict[tuple[str, str], CrdSource] = {
    ("keda.sh/v1alpha1", "ScaledObject"): CrdSource(
        *KEDA_MODULE,
        "config/crd/bases/keda.sh_scaledobjects.yaml",
        "af35555862a83933b074af14ad439c4b4ceabaf4daa3e9338e9b23e36d308d80",
    ),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): CrdSource(
        *KEDA_MODULE,
        "config/crd/bases/keda.sh_triggerauthentications.yaml",
        "275307b4cb19ca8f0f506a879282aa4c67587ac16ec757f494d6585c5c185d65",
    ),
    ("monitoring.coreos.com/v1", "PodMonitor"): CrdSource(
        *_PROMETHEUS_OPERATOR,
        "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
        "8ce88c52c51209993511cae093089c9525f5552def88119e3f559123ee9d454b",
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): CrdSource(
        *_PROMETHEUS_OPERATOR,
        "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
        "98fd16c9ab79fba8dcd6ef62c957c98cd6546ab74ce0a4ecf09ddf2fda03020e",
    ),
    ("postgresql.cnpg.io/v1", "Cluster"): CrdSource(
        *_CNPG,
        "config/crd/bases/postgresql.cnpg.io_clusters.yaml",
        "ee19cb5b0fe9dacb4e6fc387b6171b95a078d48e970225bdc285cab7f2a482d2",
    ),
}


def module_zip(module: str, version: str) -> Path:
    """The module's archive in Go's module cache, downloaded (and checksum-verified) if needed."""
    go = shutil.which("go")
    if go is None:
        raise SchemaUnavailable("go not found: the operators' CRDs come from their Go modules")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    with tempfile.TemporaryDirectory() as empty:  # outside any go.mod
        done = subprocess.run(
            [go, "mod", "download", "-json", f"{module}@{version}"],
            cwd=empty,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    try:
        info = json.loads(done.stdout)
    except json.JSONDecodeError as e:
        raise SchemaUnavailable(f"go mod download {module}@{version}: {done.stderr}") from e
    # "Error" may only say the module needs a newer Go to build: its archive is still verified
    if "Zip" not in info or not Path(info["Zip"]).is_file():
        raise SchemaUnavailable(f"go mod download {module}@{version}: {info.get('Error')}")
    return Path(info["Zip"])


def pinned_file(source: CrdSource) -> bytes:
    """The CRD file's bytes, refused unless they hash to the pinned SHA-256."""
    with zipfile.ZipFile(module_zip(source.module, source.version)) as archive:
        data = archive.read(f"{source.module}@{source.version}/{source.path}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != source.sha256:
        raise SchemaUnavailable(
            f"{source.path} in {source.label} hashes to {digest}, pinned {source.sha256}"
        )
    return data


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever the API server would prune them."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The strict ``openAPIV3Schema`` of one served version of a pinned CRD."""
    source = CRDS[(api_version, kind)]
    crd = yaml.safe_load(pinned_file(source))
    version = api_version.split("/")[1]
    for served in crd["spec"]["versions"]:
        if served["name"] == version and served.get("served", False):
            schema: dict[str, Any] = copy.deepcopy(served["schema"]["openAPIV3Schema"])
            # the CRD types metadata as a bare object: the API server applies ObjectMeta's rules
            schema.setdefault("properties", {})["metadata"] = {"type": "object"}
            return dict(strict(schema))
    raise SchemaUnavailable(f"{source.label} {source.path} does not serve {api_version}")


def schema_source(api_version: str, kind: str) -> str:
    """Where the schema of a kind comes from (the report's column)."""
    if (api_version, kind) in CRDS:
        return f"CRD {CRDS[(api_version, kind)].label}"
    if api_version == strimzi.API_VERSION and kind in strimzi.SCHEMAS:
        return "OUR minimal Strimzi schema (not Strimzi's CRD)"
    return f"Kubernetes {KUBERNETES_VERSION} (kubernetes-validate {_KV_VERSION})"


def _errors(validator: Any, obj: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    ]


def _object_meta_errors(metadata: dict[str, Any]) -> list[str]:
    # a ConfigMap's schema checks its metadata as ObjectMeta and nothing else is required
    holder = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}
    try:
        kv_utils.validate(holder, KUBERNETES_VERSION, strict=True)
    except kv_utils.ValidationError as e:
        return [f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"]
    return []


def validate_object(obj: dict[str, Any]) -> list[str]:
    """Every schema error of one rendered object (empty: it validates)."""
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    if (api_version, kind) in CRDS:
        errors = _errors(jsonschema.Draft7Validator(crd_schema(api_version, kind)), obj)
        return errors + _object_meta_errors(obj.get("metadata", {}))
    if api_version == strimzi.API_VERSION and kind in strimzi.SCHEMAS:
        errors = _errors(jsonschema.Draft7Validator(strimzi.SCHEMAS[kind]), obj)
        return errors + _object_meta_errors(obj.get("metadata", {}))
    try:
        kv_utils.validate(obj, KUBERNETES_VERSION, strict=True)
    except kv_utils.SchemaNotFoundError as e:
        return [f"no schema for {kind} {api_version}: {e.message}"]
    except kv_utils.ValidationError as e:
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"]
    return []
