"""The fast engine writes exactly what the arctrl engine writes, or hands the payload to arctrl.

Differential: every payload below is built by both engines; the fast engine's
JSON must equal arctrl's byte for byte (so also after parsing: keys, values,
key order and ``@graph`` order), or - for the cases it does not model - be
arctrl's own output marked as a fallback with the expected reason. A failure
names the first differing JSON path. The contract is pinned to arctrl 3.2.3.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from services.builder.engines import ENGINES, engine_path
from services.builder.engines.arctrl import build_arc_json as reference_build
from services.builder.engines.fallback import FALLBACK_ENGINE, FallbackArc, FallbackMappingError, warnings_of
from services.builder.engines.fast import build_arc_json as fast_build
from services.builder.engines.fast.support import REJECTED
from services.builder.worker import build, decode_result, init_worker
from services.common import metrics
from services.common.config import Settings
from services.common.payload import (
    AnnotationTable,
    Assay,
    Cell,
    Column,
    Comment,
    Contact,
    InvestigationPayload,
    OntologySourceReference,
    Publication,
    Study,
)
from services.common.records import header_dict
from services.dev.generator import generate_payloads, shrink_payload

from .conftest import (
    cells,
    minimal_payload,
    oa,
    payload_message,
    produce,
    rich_payload,
    running_builder,
    topic,
    wait_until,
)
from .test_mapping import CANNOT_TAKE

ARCTRL_VERSION = "3.2.3"
OBO = "http://purl.obolibrary.org/obo/"


def first_difference(expected: Any, actual: Any, path: str = "$") -> str | None:
    """The first JSON path where two documents differ (key order included), or ``None``."""
    if type(expected) is not type(actual):
        return f"{path}: arctrl {expected!r:.300} != fast {actual!r:.300}"
    if isinstance(expected, dict):
        if list(expected) != list(actual):
            return f"{path}: keys arctrl {list(expected)} != fast {list(actual)}"
        for key in expected:
            found = first_difference(expected[key], actual[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list):
        for index, (left, right) in enumerate(zip(expected, actual, strict=False)):
            found = first_difference(left, right, f"{path}[{index}]")
            if found:
                return found
        if len(expected) != len(actual):
            return f"{path}: length arctrl {len(expected)} != fast {len(actual)}"
        return None
    return None if expected == actual else f"{path}: arctrl {expected!r:.300} != fast {actual!r:.300}"


def assert_same_output(payload: InvestigationPayload, fallback: str | None = None) -> None:
    """Both engines agree; the fast engine fell back exactly when ``fallback`` names a reason."""
    try:
        expected: str | None = reference_build(payload)
    except Exception:  # MappingError, or a plain arctrl exception the worker reports as one
        expected = None
    if expected is None:
        with pytest.raises(FallbackMappingError) as refused:
            fast_build(payload)
        assert refused.value.reason == (fallback or REJECTED)
        assert refused.value.code == "mapping-failed"
        return
    actual = fast_build(payload)
    if fallback is None:
        assert not isinstance(actual, FallbackArc), f"unexpected fallback: {getattr(actual, 'reason', '')}"
    else:
        assert isinstance(actual, FallbackArc) and actual.reason == fallback
    difference = first_difference(json.loads(expected), json.loads(actual))
    assert difference is None, difference
    assert actual == expected  # byte-identical, so the content hash is too
    assert warnings_of(actual) == warnings_of(expected)


def test_contract_is_pinned_to_the_installed_arctrl() -> None:
    assert importlib.metadata.version("arctrl") == ARCTRL_VERSION


def test_fast_engine_is_registered_by_name() -> None:
    assert engine_path("fast") == "services.builder.engines.fast:build_arc_json"
    assert "arctrl" in ENGINES


def test_fast_worker_never_imports_arctrl_unless_it_falls_back() -> None:
    """A fast worker stays small (arctrl costs ~0.5 s and ~50 MB per process) until a fallback needs it."""
    script = (
        "import sys; from services.builder.engines.fast import build_arc_json; "
        "from services.common.payload import InvestigationPayload as P; "
        "build_arc_json(P(identifier='i', title='t')); print('arctrl' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# -- hand-made payloads: every column type, io type, quirk and arctrl rule ----------------------------

S1 = [Study(identifier="s1", title="Study 1")]
A1 = [Assay(identifier="a1", study_refs=["s1"], title="Assay 1")]


def table(*columns: Column, target: str = "s1", kind: str = "study", name: str = "t") -> AnnotationTable:
    return AnnotationTable(target_type=kind, target_ref=target, table_name=name, columns=list(columns))  # type: ignore[arg-type]


def io(kind: str, io_type: str | None, *values: str | None) -> Column:
    return Column(column_type=kind, column_io_type=io_type, cells=cells(*values))  # type: ignore[arg-type]


def with_tables(*tables: AnnotationTable, **fields: Any) -> InvestigationPayload:
    fields.setdefault("studies", S1)
    fields.setdefault("assays", A1)
    return minimal_payload(annotation_tables=list(tables), **fields)


def term_column(kind: str, name: str | None, uri: str | None, *values: Cell) -> Column:
    annotation = oa(name, uri) if (name and uri) else None
    return Column(
        column_type=kind, column_value=None if annotation else name, annotation=annotation, cells=list(values)
    )  # type: ignore[arg-type]


UO_CM = oa("centimeter", f"{OBO}UO_0000015")

# -- contract v2 features (comments, licence, ORCIDs, protocol columns, accessions, decisions) -------------

P = "https://orcid.org/"


def comment(name: str | None, value: str | None = None) -> Comment:
    return Comment(name=name, value=value)


V2_CASES: dict[str, tuple[InvestigationPayload, str | None]] = {
    "v2: CURIE and bioregistry accessions everywhere (arctrl's URL rewriting)": (
        minimal_payload(
            studies=[Study(identifier="s1", design_descriptors=[oa("factorial design", "OBI:0500014", "v1")])],
            assays=[
                Assay(
                    identifier="a1",
                    study_refs=["s1"],
                    technology_type=oa("imaging", "OBI:0000185"),
                    measurement_type=oa("mass", "https://bioregistry.io/NCIT:C25936"),
                    technology_platform=oa("HiSeq 2500", "NCIT:C101293", "23.1"),
                )
            ],
            contacts=[
                Contact(
                    target_type="investigation",
                    first_name="A",
                    roles=[
                        oa("ms", "MS:1000031"),
                        oa("unknown prefix", "XYZ:1"),
                        oa("dpbo", "DPBO:0000012"),
                        oa("po", "PO:0009005"),
                        oa("ro", "RO:0002"),
                        oa("purl", f"{OBO}UO_0000015"),
                    ],
                )
            ],
            annotation_tables=[
                table(
                    io("input", None, "a", "b"),
                    Column(
                        column_type="characteristic",
                        annotation=oa("organism", "OBI:0100026"),
                        cells=[
                            Cell(row_index=0, value="Zea mays", annotation=oa("Zea mays", "NCBITaxon:4577")),
                            Cell(row_index=1, value="3", annotation=oa("cm", "UO:0000015")),
                        ],
                    ),
                    Column(
                        column_type="protocol_type",
                        cells=[Cell(row_index=0, value="growth", annotation=oa("growth", "EFO:0003789"))],
                    ),
                    io("output", None, "x", "y"),
                    kind="assay",
                    target="a1",
                )
            ],
        ),
        None,
    ),
    "v2: comments, dateModified, licence, ontology sources, ORCIDs and the builder's decisions": (
        minimal_payload(
            title=None,
            license="CC-BY-4.0",
            comments=[
                comment("dateModified", "2025-07-31T17:41:41.5577612"),
                comment("note", 'say "hi"'),
                comment("empty"),
                comment(None, "nameless"),
            ],
            ontology_source_references=[
                OntologySourceReference(name="NCBITaxon", file="http://x/ncbitaxon.owl", version="2024")
            ],
            studies=[
                Study(
                    identifier="s1",
                    submission_date="2021-05-01T10:15:00",
                    comments=[comment("dateModified", "2025-01-01T10:00:00"), comment("Study Funding Agency", "")],
                )
            ],
            assays=[Assay(identifier="a1", study_refs=["s1"], comments=[comment("c", "v")])],
            contacts=[
                Contact(target_type="investigation", first_name="Bob", last_name="B"),
                Contact(
                    target_type="study",
                    target_ref="s1",
                    first_name="Bob",
                    last_name="B",
                    orcid=P + "0000-0002-1825-0097",
                ),
                Contact(
                    target_type="assay",
                    target_ref="a1",
                    first_name="Ada",
                    last_name="L",
                    comments=[comment("Worksheet")],
                ),
                Contact(
                    target_type="investigation",
                    first_name="Ada",
                    last_name="L",
                    orcid="0000-0001-9021-3197",
                    comments=[comment("k", "v")],
                ),
                Contact(target_type="investigation", email="nobody@example.org"),
                Contact(target_type="investigation", orcid="0000-0003-0970-4672"),
                Contact(target_type="investigation", first_name="Q", orcid="not an orcid"),
                Contact(target_type="investigation", roles=[oa("curator")]),
            ],
            publications=[
                Publication(target_type="investigation", title="P", doi="10.1/x", comments=[comment("k", "v")]),
                Publication(target_type="investigation", doi="10.2/y"),
                Publication(target_type="study", target_ref="s1", pubmed_id="123"),
                Publication(target_type="investigation", authors="A, B"),
            ],
        ),
        None,
    ),
    "v2: protocol columns, units without value, repeated single-use columns": (
        with_tables(
            table(
                io("input", "source_name", "a", "b", "c"),
                Column(column_type="protocol_ref", cells=cells("grow", "grow", None)),
                Column(column_type="protocol_description", cells=cells("d1", "d1", "d3")),
                Column(column_type="protocol_uri", cells=cells("http://p", None, "")),
                Column(column_type="protocol_version", cells=cells("1.0", "1.0", "2")),
                Column(
                    column_type="protocol_type",
                    cells=[Cell(row_index=0, value="growth", annotation=oa("growth", f"{OBO}OBI_0000070"))],
                ),
                term_column("component", "auger", None, *cells("steel", "wood", None)),
                term_column(
                    "characteristic",
                    "distance",
                    None,
                    Cell(row_index=0, value="", annotation=oa("m")),
                    Cell(row_index=1, value="2", annotation=oa("dt/ha")),
                    Cell(row_index=2, value=" m", annotation=oa("meter", f"{OBO}UO_0000008")),
                ),
                Column(column_type="comment", column_value="n", cells=cells("x", "y", "z")),
                Column(column_type="comment", column_value="n", cells=cells("x2", None, "z2")),
                Column(column_type="date", cells=cells("2021-01-01T10:00", None, "x")),
                Column(column_type="date", cells=cells("2021-01-02", None, None)),
                Column(column_type="performer", cells=cells("Ann", "Ann", "Ben")),
                Column(column_type="performer", cells=cells("Cid", None, None)),
                Column(
                    column_type="protocol_type",
                    cells=[Cell(row_index=1, value="other", annotation=oa("other", "DPBO:1000177"))],
                ),
                io("output", "sample_name", "s1", "s2", "s3"),
                io("output", "data", "t1", "t2", "t3"),
                io("input", "source_name", "a", "b", "c"),
                name="growth protocol",
            ),
            table(name="empty"),
        ),
        None,
    ),
}

SCORO = "http://purl.org/spar/scoro/principal-investigator"

CASES: dict[str, tuple[InvestigationPayload, str | None]] = {
    "minimal": (minimal_payload(), None),
    "rich": (rich_payload(), None),
    "studies and assays without tables": (minimal_payload(studies=S1, assays=A1), None),
    "every io type in and out": (
        with_tables(
            table(io("input", "source_name", "src 1", "src 2"), io("output", "sample_name", "smp 1", "smp 2")),
            table(io("input", "sample_name", "smp 1", "smp 2"), io("output", "material_name", "m 1", "m 2"), name="u"),
            table(io("input", "material_name", "m 1"), io("output", "data", "out.raw"), kind="assay", target="a1"),
            table(
                io("input", "data", "out.raw"), io("output", "data", "derived.csv"), kind="assay", target="a1", name="v"
            ),
            table(io("input", None, "d 1"), io("output", None, "d 2"), name="defaults"),
            table(io("input", "sample_name", "x"), io("output", "source_name", "y"), name="source out"),
        ),
        None,
    ),
    "term cells: plain, annotated, unit, empty, missing, no uri, non-OBO uri": (
        with_tables(
            table(
                io("input", "source_name", "a", "b", "c", "d", "e"),
                term_column(
                    "characteristic",
                    "organism",
                    f"{OBO}OBI_0100026",
                    Cell(row_index=0, value="Zea mays", annotation=oa("Zea mays", f"{OBO}NCBITaxon_4577")),
                    Cell(row_index=1, annotation=oa("Triticum", f"{OBO}NCBITaxon_4565")),
                    Cell(row_index=2, value="free"),
                    Cell(row_index=3, value=""),
                ),
                term_column(
                    "parameter",
                    "depth",
                    None,
                    Cell(row_index=0, value="10", annotation=UO_CM),
                    Cell(row_index=1, value="", annotation=UO_CM),
                    Cell(row_index=2, value="5", annotation=oa("span")),
                    Cell(row_index=3, value="7", annotation=oa("pi", SCORO)),
                    Cell(row_index=4, value="pi", annotation=oa("pi", SCORO)),
                ),
                term_column("factor", "treatment", f"{OBO}PECO_0007102", *cells("x", None, "y")),
                term_column("component", "auger", None, *cells("steel", "steel", None, "wood")),
                io("output", "sample_name", "o1", "o2", "o3", "o4", "o5"),
            )
        ),
        None,
    ),
    "same parameter value with different units merges like arctrl": (
        with_tables(
            table(
                io("input", "source_name", "a", "b"),
                term_column(
                    "parameter",
                    "depth",
                    None,
                    Cell(row_index=0, value="10", annotation=UO_CM),
                    Cell(row_index=1, value="10", annotation=oa("meter", f"{OBO}UO_0000008")),
                ),
                io("output", "sample_name", "o1", "o2"),
            )
        ),
        None,
    ),
    "characteristics without input, factors without output": (
        with_tables(
            table(
                term_column("characteristic", "colour", None, *cells("red", "blue")),
                term_column("factor", "heat", None, *cells("hot", "cold")),
            )
        ),
        None,
    ),
    "comment, date, performer with missing and quoted cells": (
        with_tables(
            table(
                io("input", "source_name", "a", "b", "c"),
                Column(column_type="comment", column_value="note", cells=cells('say "hi"', None, "")),
                Column(column_type="date", cells=cells("2021-05-01", None, "2021-05-03")),
                Column(column_type="performer", cells=cells("Ada Lovelace", None, "J. Doe")),
                io("output", "sample_name", "x", "y", "z"),
            )
        ),
        None,
    ),
    "empty tables: no cells, no columns": (
        with_tables(
            table(io("input", "source_name"), io("output", "sample_name")),
            table(name="nothing"),
            table(io("output", "data"), kind="assay", target="a1", name="no data"),
        ),
        None,
    ),
    "same sample in several tables, studies and assays gains properties": (
        with_tables(
            table(io("input", "source_name", "p1"), io("output", "sample_name", "s1")),
            table(
                io("input", "sample_name", "s1"),
                term_column("characteristic", "mass", None, *cells("3")),
                io("output", "material_name", "m1"),
                kind="assay",
                target="a1",
            ),
            table(
                io("input", "source_name", "p1"),
                term_column("characteristic", "age", None, *cells("4")),
                io("output", "sample_name", "s1"),
                term_column("factor", "f", None, *cells("v")),
                target="s2",
                name="again",
            ),
            studies=[*S1, Study(identifier="s2")],
        ),
        None,
    ),
    "data paths: absolute, dataset/, ./, spaces, repeated, study resources": (
        with_tables(
            table(
                io("input", "material_name", "m1", "m2", "m3", "m4", "m5"),
                io("output", "data", "/abs/x.raw", "dataset/y.raw", "./z.raw", "my file.txt", "/abs/x.raw"),
                kind="assay",
                target="a1",
            ),
            table(io("input", "data", "in.csv", "in.csv"), io("output", "data", "out.csv", "in.csv"), name="files"),
        ),
        None,
    ),
    "data input with characteristics differing per row": (
        with_tables(
            table(
                io("input", "data", "f.csv", "f.csv"),
                term_column("characteristic", "c", None, *cells("1", "2")),
                io("output", "sample_name", "x", "y"),
                kind="assay",
                target="a1",
            )
        ),
        None,
    ),
    "identifiers: encoded, spaces, unicode; table names with spaces": (
        with_tables(
            table(
                io("input", "source_name", "Bödenprobe 1"),
                io("output", "sample_name", "ü"),
                target="soil/2021.a",
                name="my table",
            ),
            table(io("input", "material_name", "m"), io("output", "data", "r.fq"), kind="assay", target="seq 1"),
            studies=[Study(identifier="soil/2021.a"), Study(identifier="plot 7"), Study(identifier=" padded ")],
            assays=[Assay(identifier="seq 1", study_refs=["soil/2021.a", "plot 7"]), Assay(identifier="ä.b")],
        ),
        None,
    ),
    "persons: shared names, roles, affiliations, performers as contacts": (
        minimal_payload(
            studies=S1,
            assays=A1,
            contacts=[
                Contact(
                    target_type="investigation",
                    first_name="Ada",
                    last_name="Lovelace",
                    affiliation="Uni A",
                    roles=[oa("principal investigator", SCORO), oa("curator"), oa("author", f"{OBO}MS_1002332")],
                ),
                Contact(target_type="investigation", first_name="Ada", last_name="Lovelace", email="ada@x.org"),
                Contact(
                    target_type="study", target_ref="s1", first_name="Ada", last_name="Lovelace", affiliation="Uni B"
                ),
                Contact(target_type="study", target_ref="s1", first_name="Mary", mid_initials="M"),
                Contact(target_type="assay", target_ref="a1", last_name="Curie", postal_address="Street 1, Town"),
                Contact(
                    target_type="assay", target_ref="a1", first_name="Jane", last_name="Roe", roles=[oa("curator")]
                ),
            ],
            annotation_tables=[
                table(
                    io("input", None, "a"),
                    Column(column_type="performer", cells=cells("Mary")),
                    kind="assay",
                    target="a1",
                )
            ],
        ),
        None,
    ),
    "publications: ids, authors, status, same title twice, study citations": (
        minimal_payload(
            studies=S1,
            publications=[
                Publication(
                    target_type="investigation",
                    title="Paper",
                    doi="10.1/x",
                    authors="A B, C D,E",
                    status=oa("published", "http://www.ebi.ac.uk/efo/EFO_0001796"),
                ),
                Publication(target_type="investigation", title="Paper", pubmed_id="42", authors=""),
                Publication(target_type="investigation", title="Other", doi="", pubmed_id=""),
                Publication(
                    target_type="study", target_ref="s1", title="Study paper", authors="Solo", status=oa("draft")
                ),
            ],
        ),
        None,
    ),
    "assay annotations and dates in many formats": (
        minimal_payload(
            submission_date="2021-1-5",
            public_release_date=None,
            description_text="desc",
            studies=[
                Study(
                    identifier="s1",
                    submission_date="2021-01-15T10:11:12Z",
                    public_release_date="garbage",
                    description_text="d",
                ),
            ],
            assays=[
                Assay(
                    identifier="a1",
                    measurement_type=oa("growth"),
                    technology_type=oa("imaging"),
                    technology_platform="Cam 3",
                ),
                Assay(identifier="a2", measurement_type=oa("mass", f"{OBO}OBI_0000366", "v1"), technology_platform=""),
            ],
        ),
        None,
    ),
    "output Source Name and Sample Name sharing a node (the reference refuses it)": (
        with_tables(
            table(io("input", None, "p"), io("output", "source_name", "s 1")),
            table(io("input", None, "q"), io("output", "sample_name", "s_1"), name="u"),
        ),
        REJECTED,
    ),
    "assay registered twice with one study (arctrl raises)": (
        minimal_payload(studies=S1, assays=[Assay(identifier="a1", study_refs=["s1", "s1"])]),
        REJECTED,
    ),
    "data paths arctrl keeps: under assays/ and studies/, URLs, root files": (
        with_tables(
            table(
                io("input", "material_name", "m", "n", "o", "p"),
                io(
                    "output",
                    "data",
                    "assays/a1/dataset/f",
                    "studies/s1/resources/r.txt",
                    "https://example.org/f.csv",
                    "isa.investigation.xlsx",
                ),
                kind="assay",
                target="a1",
            )
        ),
        None,
    ),
    "empty, blank and bare-folder data names (arctrl writes them as any other path)": (
        with_tables(
            table(
                io("input", "data", None, "x", "", "/"),
                io("output", "data", "", None, "./", " "),
                kind="assay",
                target="a1",
            ),
            table(
                io("input", "material_name", "m", "n"),
                io("output", "data", "f.csv"),
                kind="assay",
                target="a1",
                name="u",
            ),
            table(io("input", "data", "", "./"), io("output", "data", "z"), name="study data"),
        ),
        None,
    ),
    "braces and JSON that is no JSON-LD node in affiliations and addresses": (
        minimal_payload(
            contacts=[
                Contact(target_type="investigation", first_name="A", affiliation="Dept {A}", postal_address="{"),
                Contact(target_type="investigation", first_name="B", affiliation='{"name": "x"}', postal_address="{}"),
                Contact(target_type="investigation", first_name="C", affiliation='{"@id": "#x"}'),
            ]
        ),
        None,
    ),
    "repeated term columns (equal headers at two positions)": (
        with_tables(
            table(
                term_column("factor", "f", None, *cells("1", "2")),
                term_column("factor", "f", None, *cells("2", "2")),
                term_column("parameter", "p", f"{OBO}OBI_1", *cells("x")),
                term_column("parameter", "p", f"{OBO}OBI_1", *cells("x")),
            )
        ),
        None,
    ),
    **V2_CASES,
    # -- handed to arctrl on purpose -----------------------------------------------------------------
    "JSON-like affiliation (arctrl parses it)": (
        minimal_payload(
            contacts=[
                Contact(
                    target_type="investigation",
                    first_name="A",
                    affiliation='{"@id": "#org", "@type": "Organization", "name": "Org"}',
                )
            ]
        ),
        "json-like-person-field",
    ),
    "data name with a fragment selector": (
        with_tables(
            table(io("input", "material_name", "m"), io("output", "data", "f.csv#row=1"), kind="assay", target="a1")
        ),
        "data-fragment",
    ),
    "data path that is the ARC's own licence file": (
        with_tables(
            table(io("input", "material_name", "m"), io("output", "data", "/LICENSE"), kind="assay", target="a1"),
            license="MIT",
        ),
        "data-path",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_output_as_arctrl(case: str) -> None:
    payload, fallback = CASES[case]
    assert_same_output(payload, fallback)


@pytest.mark.parametrize("case", sorted(CANNOT_TAKE))
def test_cannot_take_cases_are_refused_by_the_reference(case: str) -> None:
    fields, reason = CANNOT_TAKE[case]
    data = minimal_payload().model_dump() | fields
    payload = (
        InvestigationPayload.model_construct(**data) if case.startswith("blank inv") else InvestigationPayload(**data)
    )
    with pytest.raises(FallbackMappingError, match=reason) as refused:
        fast_build(payload)
    assert refused.value.code == "mapping-failed"


# -- generated corpora and a few larger investigations ---------------------------------------------


@pytest.mark.parametrize(("profile", "n", "contract"), [("small", 20, 1), ("mixed", 30, 1), ("small", 12, 2)])
def test_generated_corpus(profile: str, n: int, contract: int) -> None:
    for payload in generate_payloads(n, 11, profile, contract):  # type: ignore[arg-type]
        assert_same_output(payload)


def test_larger_investigations() -> None:
    """The mixed corpus's medium-sized investigations plus one 'large'-profile investigation cut to 3 x 3 x 20 rows."""
    medium = sorted(generate_payloads(120, 3, "mixed"), key=_cells, reverse=True)[:2]
    for payload in [*medium, shrink_payload(generate_payloads(1, 5, "large")[0], studies=3, assays=3, rows=20)]:
        assert_same_output(payload)


def _cells(payload: InvestigationPayload) -> int:
    return sum(len(column.cells) for table in payload.annotation_tables for column in table.columns)


def test_worker_marks_fallback_builds_and_refusals() -> None:
    init_worker(engine_path("fast"))
    fast = decode_result(build(orjson.dumps(rich_payload().model_dump(mode="json"))))
    assert fast.ok and fast.fallback is None
    payload, reason = CASES["JSON-like affiliation (arctrl parses it)"]
    fallback = decode_result(build(orjson.dumps(payload.model_dump(mode="json"))))
    assert fallback.ok and fallback.fallback == reason
    assert fallback.arc_json == reference_build(payload).encode()
    warned = decode_result(build(orjson.dumps(minimal_payload(title=" ").model_dump(mode="json"))))
    assert warned.ok and warned.fallback is None
    assert warned.warnings == ("untitled-investigation: investigation has no title; its identifier 'inv-1' is used",)
    refused = decode_result(
        build(orjson.dumps(minimal_payload(studies=[Study(identifier="")]).model_dump(mode="json")))
    )
    assert not refused.ok and refused.error_code == "mapping-failed" and refused.fallback == REJECTED
    assert FALLBACK_ENGINE == "arctrl-fallback"


# -- the service reports which engine built each ARC -----------------------------------------------


def test_service_reports_fast_builds_and_counts_fallbacks(builder_settings: Callable[..., Settings]) -> None:
    settings = builder_settings(max_concurrent_arc_builds=1)
    json_like, reason = CASES["JSON-like affiliation (arctrl parses it)"]
    payloads = {
        "inv-fast": rich_payload("inv-fast"),
        "inv-curie": json_like.model_copy(update={"identifier": "inv-curie"}),
        "inv-refused": minimal_payload("inv-refused", studies=[Study(identifier="")]),
        "inv-untitled": minimal_payload("inv-untitled", title=None),
    }

    def fallbacks(why: str) -> float:
        return metrics.REGISTRY.get_sample_value("arcstream_build_engine_fallbacks_total", {"reason": why}) or 0.0

    def untitled_warnings() -> float:
        labels = {"kind": "untitled-investigation"}
        return metrics.REGISTRY.get_sample_value("arcstream_build_warnings_total", labels) or 0.0

    before = {why: fallbacks(why) for why in (reason, REJECTED)}
    warned_before = untitled_warnings()

    async def scenario() -> None:
        await produce(settings, [payload_message(p, partition=0) for p in payloads.values()])
        async with running_builder(settings, engine="fast"):

            async def all_reported() -> bool:
                return len(await topic(settings, settings.topics.report)) >= len(payloads)

            await wait_until(all_reported, "an outcome per payload")
        arcs = {r.key.decode(): r for r in await topic(settings, settings.topics.arcs)}
        report = {
            o["identifier"]: o for o in (json.loads(r.value) for r in await topic(settings, settings.topics.report))
        }

        assert {key: header_dict(r.headers)["arcstream.engine"] for key, r in arcs.items()} == {
            "inv-fast": "fast",
            "inv-curie": FALLBACK_ENGINE,
            "inv-untitled": "fast",
        }
        for key in arcs:
            assert arcs[key].value == reference_build(payloads[key]).encode()
        assert {key: (o["status"], o["engine"]) for key, o in report.items()} == {
            "inv-fast": ("built", "fast"),
            "inv-curie": ("built", FALLBACK_ENGINE),
            "inv-refused": ("failed", FALLBACK_ENGINE),
            "inv-untitled": ("built", "fast"),
        }
        assert report["inv-refused"]["error_code"] == "mapping-failed"
        # a value that did not reach the ARC as given is named in the outcome, nothing else has warnings
        assert report["inv-untitled"]["warnings"] == [
            "untitled-investigation: investigation has no title; its identifier 'inv-untitled' is used"
        ]
        assert all(report[key].get("warnings") is None for key in ("inv-fast", "inv-curie", "inv-refused"))

    asyncio.run(scenario())
    assert fallbacks(reason) - before[reason] == 1
    assert fallbacks(REJECTED) - before[REJECTED] == 1
    assert untitled_warnings() - warned_before == 1
