"""Deterministic, realistic demo data for the six source relations (``arcstream gen``).

Same ``(seed, profile)``, same rows, whether written to the database or
assembled in memory (:func:`generate_payloads`, used by benchmarks). Each
investigation is drawn from its own ``Random(seed, index)`` so investigation
``i`` does not depend on how many were generated before it.

Profiles (DESIGN / issue 2): ``small`` 1-2 studies x 1-2 assays, tables <= 5 rows;
``mixed`` mostly 1-3 x 1-3 with tables <= 10 rows and about 1 in 50 medium
(up to 5 x 4, 50-row tables); ``large`` 20 x 5 with 200-row tables.

The real-data quirks of DESIGN.md appear at fixed rates: ``study_ref`` as a
bare identifier, an assay repeated once per study link, duplicate study rows,
contacts without a first name (roles always arrive already parsed: ``jsonb``).

``contract=2`` adds the source contract v2 columns to the same rows
(docs/contract.md): comments everywhere, licence, ontology source references,
design descriptors, the platform's accession, ORCIDs, dates with a time of day,
``column_index``, the ISA protocol columns and an equal header at two positions.
Contract 1 (the default) gives exactly the rows it always gave.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from services.common.payload import InvestigationPayload
from services.extractor.source.assemble import CellLayout, assemble
from services.extractor.source.schema import selected_columns

Profile = Literal["small", "mixed", "large"]
PROFILES: tuple[Profile, ...] = ("small", "mixed", "large")

Row = dict[str, Any]

OBO = "http://purl.obolibrary.org/obo/"
ORGANISMS = [
    ("Hordeum vulgare", f"{OBO}NCBITaxon_4513"),
    ("Arabidopsis thaliana", f"{OBO}NCBITaxon_3702"),
    ("Zea mays", f"{OBO}NCBITaxon_4577"),
    ("Triticum aestivum", f"{OBO}NCBITaxon_4565"),
]
TISSUES = [("leaf", f"{OBO}PO_0025034"), ("root", f"{OBO}PO_0009005"), ("seed", f"{OBO}PO_0009010")]
TREATMENTS = [
    ("drought", f"{OBO}PECO_0007174"),
    ("control", f"{OBO}PECO_0007102"),
    ("heat", f"{OBO}PECO_0007048"),
]
MEASUREMENTS = [
    ("transcription profiling", f"{OBO}OBI_0000424"),
    ("metabolite profiling", f"{OBO}OBI_0000366"),
    ("phenotyping", f"{OBO}OBI_0001897"),
]
TECHNOLOGIES = [
    ("nucleotide sequencing", f"{OBO}OBI_0000626"),
    ("mass spectrometry", f"{OBO}OBI_0000470"),
    ("imaging", f"{OBO}OBI_0000185"),
]
PLATFORMS = ["Illumina NovaSeq 6000", "Thermo Q Exactive", "LemnaTec Scanalyzer", None]
ROLES = [
    ("principal investigator", "http://purl.org/spar/scoro/principal-investigator"),
    ("data curator", "http://purl.org/spar/scoro/data-curator"),
    ("researcher", "http://purl.org/spar/scoro/researcher"),
]
STATUSES = [
    ("published", "http://www.ebi.ac.uk/efo/EFO_0001796"),
    ("preprint", "http://www.ebi.ac.uk/efo/EFO_0001795"),
]
INSTRUMENTS = [("sequencer", f"{OBO}OBI_0400103"), ("mass spectrometer", f"{OBO}OBI_0000470")]
TEMPERATURE_UNIT = ("degree Celsius", f"{OBO}UO_0000027")
FIRST = ["Anna", "Ben", "Carla", "David", "Eva", "Felix", "Greta", "Hannes", "Ines", "Jonas"]
LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Hoffmann", "Koch"]
TOPICS = [
    "drought stress",
    "root architecture",
    "grain yield",
    "leaf metabolome",
    "heat tolerance",
    "soil microbiome",
]


@dataclass
class SourceRows:
    """Rows of all six relations for one investigation."""

    investigation: Row
    studies: list[Row] = field(default_factory=list)
    assays: list[Row] = field(default_factory=list)
    contacts: list[Row] = field(default_factory=list)
    publications: list[Row] = field(default_factory=list)
    annotation_cells: list[Row] = field(default_factory=list)

    def payload(self) -> InvestigationPayload:
        """The payload the extractor assembles from these rows (contract v2 columns included where rows carry them)."""
        found = {"vAnnotationTable": set().union(*(row.keys() for row in self.annotation_cells))}
        columns = selected_columns("vAnnotationTable", found)
        cells = [tuple(row.get(name) for name in columns) for row in self.annotation_cells]
        layout = CellLayout(column_index="column_index" in columns)
        document = assemble(
            self.investigation, self.studies, self.assays, self.contacts, self.publications, cells, layout
        )
        return InvestigationPayload.model_validate(document)


@dataclass(frozen=True)
class _Shape:
    studies: int
    assays_per_study: int
    rows: int


def _shape(rng: random.Random, profile: Profile) -> _Shape:
    if profile == "small":
        return _Shape(rng.randint(1, 2), rng.randint(1, 2), rng.randint(1, 5))
    if profile == "large":
        return _Shape(20, 5, 200)
    if rng.random() < 1 / 50:
        return _Shape(rng.randint(3, 5), 4, 50)
    return _Shape(rng.randint(1, 3), rng.randint(1, 3), rng.randint(2, 10))


def _date(rng: random.Random, year_from: int = 2015) -> str:
    day = dt.date(year_from, 1, 1) + dt.timedelta(days=rng.randint(0, 365 * 9))
    return day.isoformat()


def _pick(rng: random.Random, items: list[Any]) -> Any:
    return items[rng.randrange(len(items))]


def _person(rng: random.Random, inv: str, target_type: str, target_ref: str | None, index: int) -> Row:
    first = _pick(rng, FIRST)
    last = _pick(rng, LAST)
    role_term, role_uri = _pick(rng, ROLES)
    return {
        "investigation_ref": inv,
        "target_type": target_type,
        "target_ref": target_ref,
        "last_name": last,
        # quirk: missing first name (about 1 contact in 15)
        "first_name": None if rng.random() < 1 / 15 else first,
        "mid_initials": _pick(rng, ["A.", None, "K.", None]),
        "email": f"{first.lower()}.{index}@example.org",
        "phone": f"+49 30 {rng.randint(1000000, 9999999)}",
        "fax": None,
        "postal_address": f"Research Campus {rng.randint(1, 99)}, 10115 Berlin",
        "affiliation": _pick(rng, ["Leibniz Institute of Plant Genetics", "University of Bonn", "JKI"]),
        "roles": [{"term": role_term, "uri": role_uri, "version": None}],
    }


def _cell(inv: str, target_type: str, target_ref: str, table: str, row_index: int, **column: Any) -> Row:
    return {
        "investigation_ref": inv,
        "target_type": target_type,
        "target_ref": target_ref,
        "table_name": table,
        "column_type": column["column_type"],
        "column_io_type": column.get("column_io_type"),
        "column_value": column.get("column_value"),
        "column_annotation_term": column.get("column_annotation_term"),
        "column_annotation_uri": column.get("column_annotation_uri"),
        "column_annotation_version": column.get("column_annotation_version"),
        "row_index": row_index,
        "cell_value": column.get("cell_value"),
        "cell_annotation_term": column.get("cell_annotation_term"),
        "cell_annotation_uri": column.get("cell_annotation_uri"),
        "cell_annotation_version": column.get("cell_annotation_version"),
    }


def _plant_structure(args: tuple[str, str, str, str, int], tissue: str, tissue_uri: str) -> Row:
    """A ``Characteristic [plant structure]`` cell (Plant Ontology): every study table has one, v2 a second."""
    return _cell(
        *args,
        column_type="characteristic",
        column_value="plant structure",
        column_annotation_term="plant structure",
        column_annotation_uri=f"{OBO}PO_0009011",
        cell_value=tissue,
        cell_annotation_term=tissue,
        cell_annotation_uri=tissue_uri,
    )


def _study_table(rng: random.Random, inv: str, study: str, rows: int) -> list[Row]:
    """Source -> sample with characteristics, a factor, a comment and a date."""
    cells = []
    organism, organism_uri = _pick(rng, ORGANISMS)
    for r in range(rows):
        tissue, tissue_uri = _pick(rng, TISSUES)
        treatment, treatment_uri = _pick(rng, TREATMENTS)
        args = (inv, "study", study, "plant growth", r)
        cells += [
            _cell(*args, column_type="input", column_io_type="source_name", cell_value=f"{study}_plant_{r}"),
            _cell(
                *args,
                column_type="characteristic",
                column_value="organism",
                column_annotation_term="organism",
                column_annotation_uri=f"{OBO}OBI_0100026",
                cell_value=organism,
                cell_annotation_term=organism,
                cell_annotation_uri=organism_uri,
            ),
            _plant_structure(args, tissue, tissue_uri),
            _cell(
                *args,
                column_type="factor",
                column_value="treatment",
                column_annotation_term="treatment",
                column_annotation_uri=f"{OBO}PECO_0007067",
                cell_value=treatment,
                cell_annotation_term=treatment,
                cell_annotation_uri=treatment_uri,
            ),
            _cell(*args, column_type="date", column_value="sampling date", cell_value=_date(rng, 2020)),
            _cell(*args, column_type="comment", column_value="notes", cell_value=_pick(rng, ["ok", "late", ""])),
            _cell(*args, column_type="output", column_io_type="sample_name", cell_value=f"{study}_sample_{r}"),
        ]
    return cells


def _assay_table(rng: random.Random, inv: str, study: str, assay: str, rows: int) -> list[Row]:
    """Sample -> data with parameters (one with a unit), a component and a performer."""
    cells = []
    instrument, instrument_uri = _pick(rng, INSTRUMENTS)
    output_type = _pick(rng, ["data", "data", "material_name"])
    for r in range(rows):
        args = (inv, "assay", assay, "measurement", r)
        cells += [
            _cell(*args, column_type="input", column_io_type="sample_name", cell_value=f"{study}_sample_{r % 7}"),
            _cell(
                *args,
                column_type="parameter",
                column_value="temperature",
                column_annotation_term="temperature",
                column_annotation_uri=f"{OBO}PATO_0000146",
                cell_value=str(rng.randint(18, 30)),
                cell_annotation_term=TEMPERATURE_UNIT[0],
                cell_annotation_uri=TEMPERATURE_UNIT[1],
            ),
            _cell(
                *args,
                column_type="component",
                column_value="instrument model",
                column_annotation_term="instrument model",
                column_annotation_uri=f"{OBO}OBI_0000485",
                cell_value=instrument,
                cell_annotation_term=instrument,
                cell_annotation_uri=instrument_uri,
            ),
            _cell(*args, column_type="performer", cell_value=f"{_pick(rng, FIRST)} {_pick(rng, LAST)}"),
            _cell(
                *args,
                column_type="output",
                column_io_type=output_type,
                cell_value=f"{assay}/raw_{r}.fastq" if output_type == "data" else f"{assay}_extract_{r}",
            ),
        ]
    return cells


def generate_investigation(seed: int, index: int, profile: Profile, contract: int = 1) -> SourceRows:
    """The rows of investigation number ``index`` for ``(seed, profile)`` (with contract v2 columns if asked)."""
    rng = random.Random(f"{seed}:{profile}:{index}")
    inv = f"INV-{index:06d}"
    shape = _shape(rng, profile)
    topic = _pick(rng, TOPICS)
    submitted = _date(rng)
    rows = SourceRows(
        investigation={
            "identifier": inv,
            "title": f"{topic.capitalize()} study {index}",
            "description_text": f"Investigation of {topic} in field and greenhouse trials ({index}).",
            "submission_date": submitted,
            "public_release_date": None if rng.random() < 0.2 else _date(rng, 2024),
        }
    )
    rows.contacts.append(_person(rng, inv, "investigation", inv, 0))
    rows.publications.append(
        {
            "investigation_ref": inv,
            "target_type": "investigation",
            "target_ref": inv,
            "pubmed_id": str(rng.randint(10_000_000, 39_999_999)),
            "doi": f"10.5555/arcstream.{index}",
            "authors": f"{_pick(rng, LAST)} A, {_pick(rng, LAST)} B",
            "title": f"Results on {topic}",
            "status_term": _pick(rng, STATUSES)[0],
            "status_uri": None,
            "status_version": None,
        }
    )
    for s in range(shape.studies):
        study = f"{inv}-S{s + 1}"
        study_row = {
            "identifier": study,
            "investigation_ref": inv,
            "title": f"{topic.capitalize()} trial {s + 1}",
            "description_text": f"Trial {s + 1} of investigation {inv}.",
            "submission_date": submitted,
            "public_release_date": None,
        }
        rows.studies.append(study_row)
        if rng.random() < 0.05:  # quirk: duplicate study row
            rows.studies.append(dict(study_row))
        rows.contacts.append(_person(rng, inv, "study", study, s + 1))
        if rng.random() < 0.3:
            rows.publications.append(
                {
                    "investigation_ref": inv,
                    "target_type": "study",
                    "target_ref": study,
                    "pubmed_id": None,
                    "doi": f"10.5555/arcstream.{index}.{s + 1}",
                    "authors": f"{_pick(rng, LAST)} C",
                    "title": f"Trial report {s + 1}",
                    "status_term": STATUSES[1][0],
                    "status_uri": STATUSES[1][1],
                    "status_version": None,
                }
            )
        rows.annotation_cells += _study_table(rng, inv, study, shape.rows)
        for a in range(shape.assays_per_study):
            assay = f"{study}-A{a + 1}"
            measurement, measurement_uri = _pick(rng, MEASUREMENTS)
            technology, technology_uri = _pick(rng, TECHNOLOGIES)
            assay_row = {
                "identifier": assay,
                "investigation_ref": inv,
                "study_ref": json.dumps([study]),
                "title": f"{measurement.capitalize()} {a + 1}",
                "description_text": f"{measurement} of {study}",
                "measurement_type_term": measurement,
                "measurement_type_uri": measurement_uri,
                "measurement_type_version": None,
                "technology_type_term": technology,
                "technology_type_uri": technology_uri,
                "technology_type_version": None,
                "technology_platform": _pick(rng, PLATFORMS),
            }
            quirk = rng.random()
            if quirk < 0.1:  # quirk: study_ref as a bare identifier
                assay_row["study_ref"] = study
            rows.assays.append(assay_row)
            if quirk > 0.92 and s > 0:  # quirk: the same assay repeated once per study link
                rows.assays.append(assay_row | {"study_ref": json.dumps([f"{inv}-S1"])})
            rows.contacts.append(_person(rng, inv, "assay", assay, 100 + a))
            rows.annotation_cells += _assay_table(rng, inv, study, assay, shape.rows)
    if contract == 2:
        _add_v2(rows, random.Random(f"{seed}:{profile}:{index}:v2"))
    return rows


PROTOCOL_TYPES = [("assay protocol", "DPBO:1000177"), ("extraction protocol", "DPBO:1000171")]
PLATFORM_ACCESSIONS = {
    "Illumina NovaSeq 6000": "NCIT:C181998",
    "Thermo Q Exactive": "http://purl.obolibrary.org/obo/MS_1001911",
    "LemnaTec Scanalyzer": None,
}


def _orcid(rng: random.Random) -> str:
    digits = "".join(str(rng.randrange(10)) for _ in range(15))
    return f"0000-{digits[3:7]}-{digits[7:11]}-{digits[11:14]}{rng.choice('0123456789X')}"


def _add_v2(rows: SourceRows, rng: random.Random) -> None:
    """The contract v2 columns on the rows of one investigation (repeated rows get equal values)."""
    inv = rows.investigation
    inv["submission_date"] = f"{inv['submission_date']}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:07.5577612"
    inv["comments"] = [{"name": "Funding", "value": _pick(rng, ["DFG", "BMBF", "EU Horizon"])}]
    inv["license"] = _pick(rng, ["CC-BY-4.0", "CC0-1.0", None])
    inv["ontology_source_references"] = [
        {"name": "OBI", "file": f"{OBO}obi.owl", "version": "2024-01-01", "description": "Biomedical investigations"}
    ]
    for study in rows.studies:
        study["comments"] = [{"name": "Study Funding Agency", "value": ""}, {"name": "Worksheet", "value": None}]
        study["design_descriptors"] = [{"term": "factorial design", "uri": f"{OBO}OBI_0500014", "version": None}]
    for assay in rows.assays:
        assay["technology_platform_uri"] = PLATFORM_ACCESSIONS.get(assay["technology_platform"])
        assay["technology_platform_version"] = None
        assay["comments"] = [{"name": "Assay note", "value": f"see {assay['identifier']}.md"}]
    for contact in rows.contacts:
        contact["orcid"] = _orcid(rng) if rng.random() < 0.4 else None
        contact["comments"] = [{"name": "Worksheet", "value": None}] if rng.random() < 0.3 else None
    for publication in rows.publications:
        publication["comments"] = [{"name": "PMCID", "value": f"PMC{rng.randrange(10**6, 10**7)}"}]
    rows.annotation_cells = _v2_cells(rows.annotation_cells, rng)


def _v2_cells(cells: list[Row], rng: random.Random) -> list[Row]:
    """Protocol columns on assay tables, a second ``plant structure`` on study tables, ``column_index`` on all."""
    by_row: dict[tuple[Any, ...], list[Row]] = {}
    for cell in cells:
        by_row.setdefault((cell["target_type"], cell["target_ref"], cell["table_name"], cell["row_index"]), []).append(
            cell
        )
    result: list[Row] = []
    protocol = _pick(rng, PROTOCOL_TYPES)
    for (target_type, target_ref, table, row_index), row in by_row.items():
        args = (row[0]["investigation_ref"], target_type, target_ref, table, row_index)
        if target_type == "assay":
            row = [
                row[0],
                _cell(*args, column_type="protocol_ref", cell_value=f"{table}.md"),
                _cell(
                    *args,
                    column_type="protocol_type",
                    cell_value=protocol[0],
                    cell_annotation_term=protocol[0],
                    cell_annotation_uri=protocol[1],
                ),
                _cell(*args, column_type="protocol_description", cell_value=f"How {table} is done."),
                _cell(*args, column_type="protocol_version", cell_value="1.0"),
                *row[1:],
            ]
        else:
            tissue, tissue_uri = _pick(rng, TISSUES)
            row = [
                *row[:-1],
                _plant_structure(args, tissue, tissue_uri),
                row[-1],
            ]
        result += [cell | {"column_index": position} for position, cell in enumerate(row)]
    return result


def generate(n: int, seed: int, profile: Profile, contract: int = 1) -> Iterator[SourceRows]:
    """``n`` investigations, in index order."""
    for index in range(n):
        yield generate_investigation(seed, index, profile, contract)


def generate_payloads(n: int, seed: int, profile: Profile, contract: int = 1) -> list[InvestigationPayload]:
    """The payloads the extractor would publish for ``arcstream gen`` with the same arguments."""
    return [rows.payload() for rows in generate(n, seed, profile, contract)]


def shrink_payload(payload: InvestigationPayload, studies: int, assays: int, rows: int) -> InvestigationPayload:
    """The first ``studies`` studies, ``assays`` of their assays and ``rows`` rows of every table.

    Benchmarks and tests use it to cut a ``large`` investigation down to a size arctrl finishes quickly.
    """
    kept_studies = payload.studies[:studies]
    kept = {s.identifier for s in kept_studies}
    kept_assays = [a for a in payload.assays if set(a.study_refs) <= kept][:assays]
    owners = kept | {a.identifier for a in kept_assays}
    tables = [
        t.model_copy(
            update={
                "columns": [
                    c.model_copy(update={"cells": [cell for cell in c.cells if cell.row_index < rows]})
                    for c in t.columns
                ]
            }
        )
        for t in payload.annotation_tables
        if t.target_ref in owners
    ]
    return payload.model_copy(
        update={
            "studies": kept_studies,
            "assays": kept_assays,
            "annotation_tables": tables,
            "contacts": [c for c in payload.contacts if c.target_type == "investigation" or c.target_ref in owners],
            "publications": [
                p for p in payload.publications if p.target_type == "investigation" or p.target_ref in owners
            ],
        }
    )
