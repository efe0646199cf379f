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


def test_every_table_of_the_worker_has_its_changelog_declared(tmp_path) -> None:
    """The worker pre-creates its tables' changelogs: the list must match the app's tables."""
    from streams.app import build_app
    from streams.settings import Settings
    from streams.worker import build_dependencies

    settings = Settings(
        run_dir=tmp_path,
        store={"url": f"sqlite:///{tmp_path / 'store.sqlite'}"},
        worker={"app_id": "layout-test", "data_dir": tmp_path / "w"},
    )
    deps = build_dependencies(settings)
    try:
        pipeline = build_app(settings, deps)
        tables = {name: table.partitions for name, table in pipeline.tables.items()}
    finally:
        deps.store.dispose()
    partitions = settings.kafka.partitions
    assert tables == {name: n or partitions for name, n in t.TABLES.items()}
    layout = t.changelog_layout("layout-test", partitions)
    for name, table in pipeline.tables.items():
        assert layout[table.changelog_topic.get_topic_name()] == (tables[name], True)
