"""Tiny payloads built with the payload models; one rich payload covers every relation and column type."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from services.builder.engines import register_engine
from services.builder.service import BuilderService
from services.common.config import Settings
from services.common.kafka.clients import make_producer, start_client
from services.common.kafka.reading import read_topic
from services.common.kafka.topics import ensure_topics
from services.common.payload import (
    AnnotationTable,
    Assay,
    Cell,
    Column,
    Contact,
    InvestigationPayload,
    OntologyAnnotation,
    Publication,
    Study,
)
from services.common.records import RunMarker
from services.dev.stack.broker import CLIENT_SETTINGS

from . import fakes

OBI_URI = "http://purl.obolibrary.org/obo/OBI_0000070"


def oa(term: str, uri: str | None = None, version: str | None = None) -> OntologyAnnotation:
    return OntologyAnnotation(term=term, uri=uri, version=version)


def cells(*values: str | None) -> list[Cell]:
    return [Cell(row_index=i, value=v) for i, v in enumerate(values) if v is not None]


def minimal_payload(identifier: str = "inv-1", **fields: Any) -> InvestigationPayload:
    """The smallest buildable payload (an investigation needs a title)."""
    return InvestigationPayload(
        identifier=identifier, title=fields.pop("title", f"Investigation {identifier}"), **fields
    )


def rich_payload(identifier: str = "inv-rich") -> InvestigationPayload:
    """Every relation, every column type and io type, and the accepted quirks (encoded ids, no first name)."""
    study_table = AnnotationTable(
        target_type="study",
        target_ref="soil/2021.a",
        table_name="sampling",
        columns=[
            Column(column_type="input", column_io_type="source_name", cells=cells("plot 1", "plot 2")),
            Column(
                column_type="characteristic",
                annotation=oa("organism", "http://purl.obolibrary.org/obo/OBI_0100026", "2024-01"),
                cells=[
                    Cell(
                        row_index=0,
                        value="Zea mays",
                        annotation=oa("Zea mays", "http://purl.obolibrary.org/obo/NCBITaxon_4577"),
                    ),
                    Cell(row_index=1, value="Triticum"),
                ],
            ),
            Column(
                column_type="parameter",
                column_value="depth",
                cells=[
                    Cell(
                        row_index=0,
                        value="10",
                        annotation=oa("centimeter", "http://purl.obolibrary.org/obo/UO_0000015"),
                    ),
                    Cell(
                        row_index=1,
                        value="20",
                        annotation=oa("centimeter", "http://purl.obolibrary.org/obo/UO_0000015"),
                    ),
                ],
            ),
            Column(column_type="factor", column_value="treatment", cells=cells("control", "drought")),
            Column(column_type="component", column_value="auger", cells=cells("steel auger", "steel auger")),
            Column(column_type="comment", column_value="weather", cells=cells("sunny", "rain")),
            Column(column_type="date", cells=cells("2021-05-01", "2021-05-02")),
            Column(column_type="performer", cells=cells("J. Doe", "J. Doe")),
            Column(column_type="output", column_io_type="sample_name", cells=cells("sample 1", "sample 2")),
        ],
    )
    assay_table = AnnotationTable(
        target_type="assay",
        target_ref="seq.1",
        table_name="extraction",
        columns=[
            Column(column_type="input", column_io_type="sample_name", cells=cells("sample 1", "sample 2")),
            Column(column_type="output", column_io_type="material_name", cells=cells("dna 1", "dna 2")),
        ],
    )
    data_table = AnnotationTable(
        target_type="assay",
        target_ref="seq.1",
        table_name="sequencing",
        columns=[
            Column(column_type="input", column_io_type="material_name", cells=cells("dna 1", "dna 2")),
            Column(column_type="output", column_io_type="data", cells=cells("reads_1.fastq", "reads_2.fastq")),
        ],
    )
    return InvestigationPayload(
        identifier=identifier,
        title="Soil biodiversity",
        description_text="A rich test investigation",
        submission_date="2021-01-15",
        public_release_date="2022-06-30",
        studies=[
            Study(
                identifier="soil/2021.a",
                title="Sampling",
                description_text="Plots",
                submission_date="2021-02-01",
                public_release_date="2022-01-01",
            ),
            Study(identifier="greenhouse", title="Greenhouse"),
        ],
        assays=[
            Assay(
                identifier="seq.1",
                study_refs=["soil/2021.a", "greenhouse"],
                title="Sequencing",
                description_text="Amplicon sequencing",
                measurement_type=oa("metagenome", OBI_URI, "2024-01"),
                technology_type=oa("nucleotide sequencing", "http://purl.obolibrary.org/obo/OBI_0000626"),
                technology_platform="Illumina MiSeq",
            ),
            Assay(identifier="chem", study_refs=["greenhouse"], title="Chemistry"),
        ],
        contacts=[
            Contact(
                target_type="investigation",
                first_name="Ada",
                last_name="Lovelace",
                mid_initials="A",
                email="ada@example.org",
                phone="+49 1",
                fax="+49 2",
                postal_address="Street 1",
                affiliation="Institute",
                roles=[oa("principal investigator", "http://purl.obolibrary.org/obo/MS_1002332")],
            ),
            Contact(target_type="study", target_ref="soil/2021.a", last_name="Curie", email="curie@example.org"),
            Contact(target_type="assay", target_ref="seq.1", first_name="Jane", last_name="Roe"),
        ],
        publications=[
            Publication(
                target_type="investigation",
                doi="10.1000/xyz",
                pubmed_id="123456",
                authors="Lovelace A, Curie M",
                title="Soil results",
                status=oa("published", "http://www.ebi.ac.uk/efo/EFO_0001796"),
            ),
            Publication(target_type="study", target_ref="greenhouse", title="Greenhouse notes"),
        ],
        annotation_tables=[study_table, assay_table, data_table],
    )


# -- Kafka helpers for service tests ---------------------------------------------------------------

#: The dev broker (Tansu) completes a group join after half the session timeout: the dev stack's short timings.
FAST_GROUP: dict[str, int] = dict(CLIENT_SETTINGS)


@pytest.fixture
def builder_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """``make_settings`` with a short group session, so joins and takeovers take seconds."""
    return lambda **overrides: make_settings(**({"kafka": FAST_GROUP} | overrides))


Message = tuple[bytes | None, bytes | None, list[tuple[str, bytes]], int | None]


def payload_message(payload: InvestigationPayload, partition: int | None = None, run_id: str | None = None) -> Message:
    """(key, value, headers, partition) of a payload as the extractor publishes it."""
    headers = [("arcstream.kind", b"payload"), ("arcstream.schema.version", b"1")]
    if run_id:
        headers.append(("arcstream.run.id", run_id.encode()))
    return payload.identifier.encode(), orjson.dumps(payload.model_dump(mode="json")), headers, partition


def marker_message(kind: str, run_id: str, partition: int) -> Message:
    marker = RunMarker(
        kind=kind,  # type: ignore[arg-type]
        run_id=run_id,
        partition=partition,
        partitions=3,
        expected=1,
        started_at="2024-01-01T00:00:00Z",
    )
    headers = [("arcstream.kind", kind.encode()), ("arcstream.run.id", run_id.encode())]
    return marker.key, orjson.dumps(marker.model_dump(mode="json")), headers, partition


async def produce(settings: Settings, messages: list[Message]) -> None:
    await ensure_topics(settings)
    producer = make_producer(settings.kafka)
    await start_client(producer, settings.kafka)
    try:
        for key, value, headers, partition in messages:
            await producer.send_and_wait(
                settings.topics.investigations, value=value, key=key, headers=headers, partition=partition
            )
    finally:
        await producer.stop()


async def wait_until(condition: Callable[[], Awaitable[bool]], what: str, give_up_s: float = 60.0) -> None:
    """Poll ``condition`` until true; ``give_up_s`` only guards against a hung test, never asserts speed."""
    deadline = asyncio.get_running_loop().time() + give_up_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


@asynccontextmanager
async def running_builder(settings: Settings, **options: Any) -> AsyncIterator[BuilderService]:
    """A builder service running in this event loop until the block ends (graceful stop).

    Each test's topics have their own prefix; the group gets it too, so no test joins another's group.
    """
    options.setdefault("group_id", f"builder-{settings.topics.prefix}")
    service = BuilderService(settings, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield service
    finally:
        stop.set()
        await task


async def topic(settings: Settings, name: str) -> list[Any]:
    return await read_topic(settings.kafka, name)


def fake_engine() -> str:
    """Register the fake slow engine (importable by path in spawned workers) and return its name."""
    register_engine("fake-slow", f"{fakes.__name__}:fake_slow_build_arc_json")
    return "fake-slow"
