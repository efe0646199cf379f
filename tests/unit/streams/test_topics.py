"""Topic declarations: value types, co-partitioning, dead-letter twins, tables' changelogs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from faust.types.tuples import Message

from streams import topics as t
from streams.app import build_app
from streams.pipeline import Pipeline
from streams.records import CtStudy, DeadLetter, Malformed, Record
from streams.settings import Settings
from streams.worker import build_dependencies

pytestmark = pytest.mark.unit

STUDY = CtStudy(
    event_id="e1",
    study_uid="1.2.3",
    patient_pseudonym="p1",
    study_uri="file:///studies/1.2.3",
    source="test",
    ct_time="2020-11-02T08:00:00+00:00",
    published_at=1.0,
    hospital="h1",
)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    tmp_path = tmp_path_factory.mktemp("topics")
    return Settings(
        run_dir=tmp_path,
        store={"url": f"sqlite:///{tmp_path / 'store.sqlite'}"},
        worker={"app_id": "layout-test", "data_dir": tmp_path / "w"},
    )


@pytest.fixture(scope="module")
def pipeline(settings: Settings) -> Iterator[Pipeline]:
    """The worker's app as it is built, with no broker behind it (nothing is started)."""
    deps = build_dependencies(settings)
    try:
        yield build_app(settings, deps)
    finally:
        deps.store.dispose()


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


def test_every_topic_declares_its_value_type() -> None:
    types = t.value_types()
    assert set(types) == set(t.topic_layout(4))
    for spec in t.ALL_TOPICS:
        assert spec.value_type is bytes or issubclass(spec.value_type, Record), spec.name
        if spec.has_dlq:
            assert types[spec.dlq] is DeadLetter
    assert types["ct.studies"] is CtStudy
    assert types["triage.alerts.fhir"] is bytes  # a FHIR resource, no record of ours


def _message(topic: str, value: bytes | None) -> Message:
    return Message(
        topic=topic, partition=0, offset=7, timestamp=0.0, timestamp_type=0, headers=[],
        key=b"p1", value=value, checksum=None,
    )  # fmt: skip


def test_worker_topics_decode_records_and_keep_malformed_bytes(pipeline: Pipeline) -> None:
    topic = pipeline.topic(t.CT_STUDIES.name)

    async def decode(value: bytes | None) -> object:
        return (await topic.decode(_message(t.CT_STUDIES.name, value))).value

    assert asyncio.run(decode(STUDY.to_bytes())) == STUDY
    for bad in (b"not json", b'{"study_uid": "1.2.3"}', b"\xff\xfe"):
        got = asyncio.run(decode(bad))
        assert isinstance(got, Malformed) and got.payload == bad
    assert asyncio.run(decode(None)) is None  # a tombstone: the agent dead-letters it
    # what an agent sends is encoded by the topic: a record as its JSON, bytes as they are
    assert topic.prepare_value(STUDY, None)[0] == STUDY.to_bytes()
    fhir = pipeline.topic(t.TRIAGE_ALERTS_FHIR.name)
    assert fhir.prepare_value(b'{"resourceType": "RiskAssessment"}', None)[0].startswith(b"{")
    assert pipeline.topic(t.CT_STUDIES.dlq).value_type is DeadLetter


def test_every_table_of_the_worker_has_its_changelog_declared(
    pipeline: Pipeline, settings: Settings
) -> None:
    """The worker pre-creates its tables' changelogs: the list must match the app's tables."""
    tables = {name: table.partitions for name, table in pipeline.tables.items()}
    partitions = settings.kafka.partitions
    assert tables == {name: n or partitions for name, n in t.TABLES.items()}
    layout = t.changelog_layout("layout-test", partitions)
    for name, table in pipeline.tables.items():
        assert layout[table.changelog_topic.get_topic_name()] == (tables[name], True)
