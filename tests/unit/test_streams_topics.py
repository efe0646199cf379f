"""Topic declarations: co-partitioning and dead-letter twins."""

import pytest

from streams import topics as t

pytestmark = pytest.mark.unit


def test_patient_keyed_topics_share_a_partition_count() -> None:
    layout = t.topic_layout(6)
    keyed = [s.name for s in t.ALL_TOPICS if s.key == "patient_pseudonym"]
    assert keyed and all(layout[name][0] == 6 for name in keyed)
    assert layout[t.CAPACITY_EVENTS.name][0] == 1


def test_every_failing_topic_has_a_dead_letter_twin() -> None:
    layout = t.topic_layout(4)
    for name in ("ct.studies", "fhir.resources", "ct.quantification", "triage.config"):
        assert f"{name}.dlq" in layout
    assert layout[t.TRIAGE_CONFIG.name][1] is True  # compacted
