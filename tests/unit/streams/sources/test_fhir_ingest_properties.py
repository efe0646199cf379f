"""Property-based: mutated FHIR payloads never crash ingress or the context fold."""

from __future__ import annotations

import contextlib
import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paths import SHARED_DATA

from streams.sources.fhir_ingest import CollectingSink, FhirIngress
from triage.exceptions import FhirRejected
from triage.fhir.context import ClinicalContext
from triage.fhir.features import clinical_features
from triage.fhir.pseudonym import Pseudonymiser

pytestmark = pytest.mark.unit

# One real Synthea bundle (see ../shared/data/README.md) as the seed of the mutations.
SYNTHEA_DIR = SHARED_DATA / "fhir/synthea-covid/bundles"
SYNTHEA = SYNTHEA_DIR / "Bibi254_Schowalter414_475d72ca-91c7-7211-97e3-f000af33fc04.json"
CT = datetime(2020, 3, 8, tzinfo=UTC)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["Patient", "Observation", "Bundle", "urn:uuid:x", "Patient/x", "%", "Cel"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def base_bundle() -> dict[str, Any]:
    if SYNTHEA.exists():
        raw = json.loads(SYNTHEA.read_text())
        raw["entry"] = [
            e
            for e in raw["entry"]
            if e["resource"]["resourceType"] in {"Patient", "Observation", "Condition", "Encounter"}
        ][:25]
        return raw
    return {"resourceType": "Bundle", "type": "collection", "entry": []}


BASE = base_bundle()


def mutate(doc: Any, path: list[int], value: Any, delete: bool) -> Any:
    """Replace (or delete) the node reached by following ``path`` indices through the tree."""
    node = doc
    for step in path:
        children = (
            list(node.items())
            if isinstance(node, dict)
            else list(enumerate(node))
            if isinstance(node, list)
            else []
        )
        if not children:
            break
        key, child = children[step % len(children)]
        if not isinstance(child, dict | list) or step == path[-1]:
            if delete and isinstance(node, dict):
                del node[key]
            else:
                node[key] = value
            return doc
        node = child
    return doc


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    mutations=st.lists(
        st.tuples(st.lists(st.integers(0, 200), min_size=1, max_size=8), values, st.booleans()),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_bundles_never_crash_ingress(mutations: list[tuple[list[int], Any, bool]]) -> None:
    doc = copy.deepcopy(BASE)
    for path, value, delete in mutations:
        doc = mutate(doc, path, value, delete)
    sink = CollectingSink()
    ingress = FhirIngress(Pseudonymiser(b"k", "k1"), "h", sink, "prop")
    report = ingress.ingest_json(json.dumps(doc, default=str))
    received = sum(c.received for c in report.counts.values())
    assert received == sum(c.used + c.ignored + c.rejected for c in report.counts.values())
    assert len(sink.events) == report.used
    assert len(sink.dead_letters) == report.rejected
    # what ingress let through folds without surprises downstream
    ctx = ClinicalContext()
    for event in sink.events:
        with contextlib.suppress(FhirRejected):  # typed: the worker dead-letters it
            ctx = ctx.apply(event.resource)
    clinical_features(ctx, CT)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(payload=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_are_rejected_not_raised(payload: bytes) -> None:
    sink = CollectingSink()
    ingress = FhirIngress(Pseudonymiser(b"k", "k1"), "h", sink, "prop")
    ingress.ingest_json(payload)
    ingress.ingest_ndjson(payload)
