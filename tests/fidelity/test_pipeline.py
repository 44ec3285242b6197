"""A real ARC through the running services: source relations -> ``extract snapshot`` -> Kafka -> builder.

The fidelity harness runs the snapshot's read path and the builder worker
without Kafka; here the real ARC with the most features (Talinum: protocol
columns, ORCIDs, data files, bioregistry accessions) takes the whole way on the
real broker, and the ARC on ``arc.arcs`` must be the arctrl engine's ARC for the
payload on ``arc.investigations``, byte for byte, built by the fast engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from services.common.config import Settings
from services.common.records import H_KIND, header_dict, loads
from services.dev.fidelity.harness import Cache, original_of, reference_build
from services.dev.generator import SourceRows
from services.dev.writer import write_rows
from services.extractor.snapshot import run_snapshot
from services.extractor.source.schema import connect, ensure_source_schema
from tests.builder.conftest import FAST_GROUP, running_builder, topic, wait_until
from tests.fidelity.conftest import REAL_ARCS

TALINUM = REAL_ARCS / "ro-crate" / "talinum-cam_arc.reexported.ro-crate-metadata.json"


@pytest.mark.timeout(900)
def test_a_real_arc_through_snapshot_kafka_and_builder(
    make_settings: Callable[..., Settings], database_url: str, fidelity_cache: Cache
) -> None:
    settings = make_settings(kafka=FAST_GROUP)
    rows = SourceRows(**original_of(TALINUM, fidelity_cache)["rows"])
    identifier = str(rows.investigation["identifier"])

    async def scenario() -> None:
        conn = await connect(database_url)
        try:
            await ensure_source_schema(conn)
            await conn.commit()
            await write_rows(conn, [rows])
        finally:
            await conn.close()
        summary = await run_snapshot(settings, progress=False)
        assert (summary.published, summary.failed) == (1, 0)
        async with running_builder(settings, engine="fast"):

            async def built() -> bool:
                reports = await topic(settings, settings.topics.report)
                return any(loads(r.value)["identifier"] == identifier for r in reports)

            await wait_until(built, "the real ARC's build outcome", give_up_s=120)
        (payload,) = [
            r
            for r in await topic(settings, settings.topics.investigations)
            if header_dict(r.headers)[H_KIND] == "payload"
        ]
        (arc,) = [r for r in await topic(settings, settings.topics.arcs) if header_dict(r.headers)[H_KIND] == "arc"]
        (outcome,) = [loads(r.value) for r in await topic(settings, settings.topics.report)]
        assert (outcome["status"], outcome["engine"], outcome.get("warnings")) == ("built", "fast", None)
        assert header_dict(arc.headers)["arcstream.engine"] == "fast"
        assert arc.value.decode() == reference_build(payload.value, fidelity_cache)["arc_json"]

    asyncio.run(scenario())
