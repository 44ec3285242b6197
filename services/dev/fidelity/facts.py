"""An ARC as a set of facts, so that two ARCs can be compared fact by fact.

A fact is a tuple whose first element is its kind: identifiers, titles,
descriptions, dates, comments, the licence, ontology source references,
persons field by field with roles and comments, publications field by field,
study design descriptors, study/assay links, tables, every column (header and
how many equal headers precede it) and every non-empty cell (header, row,
content: which of several equal headers holds a value is no fact of its own).
Ontology annotations count as name plus accession, the accession reduced to
``PREFIX:id`` where arctrl can read one (a round trip through RO-Crate turns
PURLs into CURIEs and back into bioregistry URLs; the term is the same).

The ``arcstream:`` comments the builder writes for what arctrl's RO-Crate
writer drops (docs/builder.md) are read back as the facts they carry: an
original study/assay identifier, an assay's study registrations, ontology
source references, design descriptors, an invalid ORCID, a date column and a
repeated single-use column. They are a documented part of the ARC, so a
consumer reading them gets those facts; they are not counted as comments.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
from arctrl.py.Core.Helper.regex import try_parse_term_annotation

from services.builder.decisions import (
    DATE_COMMENT,
    DESIGN_DESCRIPTORS_COMMENT,
    INVALID_ORCID_COMMENT,
    ONTOLOGY_SOURCES_COMMENT,
    REPEATED_COLUMN_PREFIX,
)
from services.builder.engines.arctrl.mapping import REGISTERED_STUDIES_COMMENT
from services.builder.identifiers import ORIGINAL_IDENTIFIER_COMMENT

Fact = tuple[Any, ...]
#: Comments that carry facts of their own (read back as those facts, not counted as comments).
CARRIER_COMMENTS = frozenset(
    {
        ORIGINAL_IDENTIFIER_COMMENT,
        REGISTERED_STUDIES_COMMENT,
        ONTOLOGY_SOURCES_COMMENT,
        DESIGN_DESCRIPTORS_COMMENT,
        INVALID_ORCID_COMMENT,
    }
)
_REPEATED = re.compile(rf"^{re.escape(REPEATED_COLUMN_PREFIX)}(?P<header>.+) #(?P<n>\d+)$")
#: A term written as free text by the builder (a repeated Protocol Type column): ``name <accession>``.
_TEXT_TERM = re.compile(r"^(?P<name>.*?)(?: <(?P<uri>[^<>]*)>)?$")
#: ``CompositeHeader`` tags (arctrl's case order) used here.
_PROTOCOL_TYPE, _COMMENT = 4, 14


def accession(tan: str | None) -> str:
    """An accession as ``PREFIX:id`` where arctrl reads one from it, else as given ("" for none)."""
    if not tan or not tan.strip():
        return ""
    parsed = try_parse_term_annotation(tan)
    return f"{parsed['IDSpace']}:{parsed['LocalID']}" if parsed else tan.strip()


def term(oa: Any) -> tuple[str, str]:
    """An ontology annotation as (name, accession)."""
    return (oa.Name or "", accession(oa.TermAccessionNumber))


def _comments(item: Any) -> dict[str, str | None]:
    return {c.Name: c.Value for c in item.Comments if c.Name is not None}


def _text(value: str | None) -> str | None:
    return value if value not in (None, "") else None


def _field(*fact: Any) -> Iterator[Fact]:
    """A fact whose last element is a value; none when the value is empty."""
    if fact[-1] not in (None, "", ()):
        yield fact


def arc_facts(arc: Any) -> set[Fact]:
    """Every fact of an arctrl ``ARC`` (or ``ArcInvestigation``)."""
    facts: set[Fact] = set()
    investigation_comments = _comments(arc)
    for name in ("Identifier", "Title", "Description", "SubmissionDate", "PublicReleaseDate"):
        facts.update(_field("investigation", name, _text(getattr(arc, name))))
    facts.update(_plain_comments("investigation", arc))
    license_ = getattr(arc, "License", None)
    if license_ is not None:
        facts.update(_field("license", _text(license_.Content)))
    for source in arc.OntologySourceReferences:
        facts.add(("ontology-source", source.Name, source.File, source.Version, source.Description))
    for source in orjson.loads(investigation_comments.get(ONTOLOGY_SOURCES_COMMENT) or "[]"):
        facts.add(
            ("ontology-source", source["name"], source.get("file"), source.get("version"), source.get("description"))
        )
    facts.update(_persons("investigation", arc.Contacts))
    facts.update(_publications("investigation", arc.Publications))

    study_ids = {study.Identifier: _original_id(study) for study in arc.Studies}
    assay_ids = {assay.Identifier: _original_id(assay) for assay in arc.Assays}
    for study in arc.Studies:
        owner = ("study", study_ids[study.Identifier])
        facts.update(_dataset(owner, study, ("Title", "Description", "SubmissionDate", "PublicReleaseDate")))
        facts.update(_persons(owner, study.Contacts))
        facts.update(_publications(owner, study.Publications))
        for descriptor in study.StudyDesignDescriptors:
            facts.add(("design-descriptor", owner, *term(descriptor)))
        for descriptor in orjson.loads(_comments(study).get(DESIGN_DESCRIPTORS_COMMENT) or "[]"):
            facts.add(("design-descriptor", owner, descriptor["term"], accession(descriptor.get("uri"))))
        for assay_id in study.RegisteredAssayIdentifiers:
            facts.add(("link", owner[1], assay_ids.get(assay_id, assay_id)))
        facts.update(_tables(owner, study.Tables))
    for assay in arc.Assays:
        owner = ("assay", assay_ids[assay.Identifier])
        facts.update(_dataset(owner, assay, ("Title", "Description")))
        for name in ("MeasurementType", "TechnologyType", "TechnologyPlatform"):
            annotation = getattr(assay, name)
            if annotation is not None and not annotation.is_empty():
                facts.add(("assay-annotation", owner, name, *term(annotation)))
        facts.update(_persons(owner, assay.Performers))
        for study_id in orjson.loads(_comments(assay).get(REGISTERED_STUDIES_COMMENT) or "[]"):
            facts.add(("link", study_ids.get(study_id, study_id), owner[1]))
        facts.update(_tables(owner, assay.Tables))
    return facts


def _original_id(item: Any) -> str:
    """A study's or assay's identifier as the source gave it (the builder keeps an encoded one's original)."""
    return _comments(item).get(ORIGINAL_IDENTIFIER_COMMENT) or item.Identifier


def _plain_comments(owner: Any, item: Any) -> Iterator[Fact]:
    for comment in item.Comments:
        if comment.Name is not None and comment.Name not in CARRIER_COMMENTS:
            yield ("comment", owner, comment.Name, comment.Value or "")


def _dataset(owner: tuple[str, str], item: Any, fields: tuple[str, ...]) -> Iterator[Fact]:
    yield owner
    for name in fields:
        yield from _field(owner, name, _text(getattr(item, name)))
    yield from _plain_comments(owner, item)


def _persons(owner: Any, persons: Any) -> Iterator[Fact]:
    for person in persons:
        key = (person.FirstName or "", person.LastName or "")
        yield ("person", owner, key)
        comments = _comments(person)
        orcid = person.ORCID or comments.get(INVALID_ORCID_COMMENT)
        for name, value in (
            ("ORCID", orcid),
            ("MidInitials", person.MidInitials),
            ("EMail", person.EMail),
            ("Phone", person.Phone),
            ("Fax", person.Fax),
            ("Address", person.Address),
            ("Affiliation", person.Affiliation),
        ):
            yield from _field("person-field", owner, key, name, _text(value))
        for role in person.Roles:
            yield ("person-role", owner, key, *term(role))
        for comment in person.Comments:
            if comment.Name is not None and comment.Name not in CARRIER_COMMENTS:
                yield ("person-comment", owner, key, comment.Name, comment.Value or "")


def _publications(owner: Any, publications: Any) -> Iterator[Fact]:
    for publication in publications:
        key = publication.Title or publication.DOI or publication.PubMedID or ""
        yield ("publication", owner, key)
        for name in ("Title", "DOI", "PubMedID", "Authors"):
            yield from _field("publication-field", owner, key, name, _text(getattr(publication, name)))
        if publication.Status is not None and not publication.Status.is_empty():
            yield ("publication-status", owner, key, *term(publication.Status))
        for comment in publication.Comments:
            if comment.Name is not None:
                yield ("publication-comment", owner, key, comment.Name, comment.Value or "")


def header_text(header: Any) -> str:
    """A column header as arctrl prints it, with the accession of a term header."""
    annotation = header.TryGetTerm() if header.IsTermColumn and header.tag != 4 else None
    text = header.ToString()
    return f"{text} <{accession(annotation.TermAccessionNumber)}>" if annotation is not None else text


def _column_header(header: Any) -> tuple[str, int | None]:
    """The header a column stands for, and its occurrence when an ``arcstream:`` comment column carried it.

    A date column travels as ``arcstream:date`` (the first) and ``arcstream:Date #<n>``, a
    repeated single-use column as ``arcstream:<header> #<n>``; other columns are counted in order.
    """
    if header.tag == _COMMENT:
        name = header.ToString()[len("Comment [") : -1]
        if name == DATE_COMMENT:
            return "Date", 1
        repeated = _REPEATED.match(name)
        if repeated:
            return repeated.group("header"), int(repeated.group("n"))
    return header_text(header), None


def cell_text(cell: Any) -> str | None:
    """A cell's content (``None`` for an empty cell): kind, then its values."""
    if cell.is_empty():
        return None
    if cell.is_term:
        return "term|{}|{}".format(*term(cell.AsTerm))
    if cell.is_unitized:
        value, unit = cell.AsUnitized
        return "unit|{}|{}|{}".format(value, *term(unit))
    if cell.is_data:
        data = cell.AsData
        return f"data|{data.NameText}|{data.Format or ''}|{data.SelectorFormat or ''}"
    return f"text|{cell.AsFreeText}"


def _tables(owner: tuple[str, str], tables: Any) -> Iterator[Fact]:
    for table in tables:
        yield ("table", owner, table.Name)
        seen: dict[str, int] = {}
        for column in table.Columns:
            header, occurrence = _column_header(column.header)
            if occurrence is None:
                seen[header] = occurrence = seen.get(header, 0) + 1
            yield ("column", owner, table.Name, header, occurrence)
            carried = column.header.tag == _COMMENT and header != header_text(column.header)
            for row, cell in enumerate(column.cells):
                content = cell_text(cell)
                if content is not None:
                    yield ("cell", owner, table.Name, header, row, _carried(content, header) if carried else content)


def _carried(content: str, header: str) -> str:
    """A cell of a carried column as a cell of the column it stands for (terms and data paths were written as text)."""
    text = content.removeprefix("text|")
    if header == "Protocol Type":
        match = _TEXT_TERM.match(text)
        assert match is not None  # the pattern matches any text
        return f"term|{match.group('name')}|{accession(match.group('uri'))}"
    if header.endswith("[Data]"):
        return f"data|{text}||"
    return content
