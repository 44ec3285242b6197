"""The builder's decisions for real-data values arctrl cannot take as they are, made once for both engines.

:func:`prepare` turns a payload into the payload both engines map faithfully,
plus the warnings that name every value that does not reach the ARC as the
source gave it (docs/builder.md, "Values arctrl cannot take"). Nothing here
imports arctrl, so the fast engine's workers stay small.

What arctrl 3.2.3's RO-Crate writer drops although its model holds it is
carried as documented ``arcstream:`` comments, as for study registrations:

- ontology source references (explicit ones, and those derived from annotations
  when a version is known): investigation comment
  :data:`ONTOLOGY_SOURCES_COMMENT`, a JSON array of ``{name, file, version, description}``;
- study design descriptors: study comment :data:`DESIGN_DESCRIPTORS_COMMENT`,
  a JSON array of ``{term, uri, version}``;
- the n-th (n >= 2) column of one table whose header arctrl allows once (input,
  output, performer, date, a protocol column, a comment of one name): a comment
  column named ``arcstream:<header> #<n>``, e.g. ``arcstream:Output [Sample Name] #2``.

Warnings are ``"<kind>: <what happened>"``; the kind is the metric label.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import orjson

from services.builder.accessions import term_source
from services.common.payload import (
    AnnotationTable,
    Cell,
    Column,
    Comment,
    Contact,
    InvestigationPayload,
    OntologyAnnotation,
    OntologySourceReference,
    Publication,
    Study,
)

#: Investigation comment carrying the ontology source references (arctrl's RO-Crate writer drops them).
ONTOLOGY_SOURCES_COMMENT = "arcstream:ontology-source-references"
#: Study comment carrying the study design descriptors (arctrl's RO-Crate writer drops them).
DESIGN_DESCRIPTORS_COMMENT = "arcstream:design-descriptors"
#: Person comment holding an ORCID arctrl would refuse (it must contain ``dddd-dddd-dddd-dddX``).
INVALID_ORCID_COMMENT = "arcstream:orcid"
#: Prefix of the comment column that carries a table's second column of a kind arctrl allows once.
REPEATED_COLUMN_PREFIX = "arcstream:"
#: Comment column a date column is written as (arctrl 3.2.3's RO-Crate writer drops Date columns).
DATE_COMMENT = "arcstream:date"

#: arctrl's ORCID check (a search, so URLs such as https://orcid.org/0000-... pass and are reduced).
ORCID = re.compile(r"[0-9]{4}-[0-9]{4}-[0-9]{4}-[0-9]{3}[0-9X]")
#: Column types arctrl allows once per table, with the header arctrl prints for them.
SINGLE_COLUMNS = {
    "input": "Input",
    "output": "Output",
    "performer": "Performer",
    "protocol_ref": "Protocol REF",
    "protocol_type": "Protocol Type",
    "protocol_description": "Protocol Description",
    "protocol_uri": "Protocol Uri",
    "protocol_version": "Protocol Version",
}
_IO_LABELS = {"source_name": "Source Name", "sample_name": "Sample Name", "material_name": "Material", "data": "Data"}
_DEFAULT_IO = {"input": "source_name", "output": "sample_name"}


@dataclass(frozen=True)
class Prepared:
    """The payload the engines build, and what the outcome reports about values that changed or went."""

    payload: InvestigationPayload
    warnings: tuple[str, ...] = ()


@dataclass
class _Notes:
    warnings: list[str] = field(default_factory=list)

    def add(self, kind: str, message: str) -> None:
        self.warnings.append(f"{kind}: {message}")


def prepare(payload: InvestigationPayload) -> Prepared:
    """Apply every decision; a payload that needs none comes back as it is (the same object)."""
    notes = _Notes()
    update: dict[str, object] = {}
    if payload.identifier.strip() and not (payload.title or "").strip():
        notes.add(
            "untitled-investigation", f"investigation has no title; its identifier '{payload.identifier}' is used"
        )
        update["title"] = payload.identifier
    comments = _named_comments(payload.comments, "investigation", notes)
    sources = _ontology_sources(payload, notes)
    if sources:
        comments = [*comments, Comment(name=ONTOLOGY_SOURCES_COMMENT, value=_json(sources))]
    if comments != payload.comments:
        update["comments"] = comments
    studies = [_study(study, notes) for study in payload.studies]
    if any(new is not old for new, old in zip(studies, payload.studies, strict=True)):
        update["studies"] = studies
    assays = [
        assay.model_copy(update={"comments": named})
        if (named := _named_comments(assay.comments, f"assay '{assay.identifier}'", notes)) != assay.comments
        else assay
        for assay in payload.assays
    ]
    if any(new is not old for new, old in zip(assays, payload.assays, strict=True)):
        update["assays"] = assays
    contacts = [kept for contact in payload.contacts if (kept := _contact(contact, payload, notes)) is not None]
    if _changed(contacts, payload.contacts):
        update["contacts"] = contacts
    publications = [pub for item in payload.publications if (pub := _publication(item, payload, notes)) is not None]
    if _changed(publications, payload.publications):
        update["publications"] = publications
    tables = [_table(table, notes) for table in payload.annotation_tables]
    if any(new is not old for new, old in zip(tables, payload.annotation_tables, strict=True)):
        update["annotation_tables"] = tables
    prepared = payload.model_copy(update=update) if update else payload
    return Prepared(prepared, tuple(notes.warnings))


def _changed(new: Sequence[object], old: Sequence[object]) -> bool:
    """True unless ``new`` holds exactly the objects of ``old`` (decisions copy only what they change)."""
    return len(new) != len(old) or any(n is not o for n, o in zip(new, old, strict=True))


def _json(items: list[dict[str, str | None]]) -> str:
    return orjson.dumps([{k: v for k, v in item.items() if v is not None} for item in items]).decode()


def _named_comments(comments: list[Comment], where: str, notes: _Notes) -> list[Comment]:
    """Comments with a name; arctrl cannot write one without (it is named in a warning instead)."""
    kept = [comment for comment in comments if (comment.name or "").strip()]
    for comment in comments:
        if not (comment.name or "").strip():
            notes.add("nameless-comment", f"comment without a name on {where} left out (value {comment.value!r})")
    return kept if len(kept) != len(comments) else comments


def _study(study: Study, notes: _Notes) -> Study:
    comments = _named_comments(study.comments, f"study '{study.identifier}'", notes)
    if study.design_descriptors:
        descriptors = [d.model_dump() for d in study.design_descriptors]
        comments = [*comments, Comment(name=DESIGN_DESCRIPTORS_COMMENT, value=_json(descriptors))]
    return study.model_copy(update={"comments": comments}) if comments != study.comments else study


def all_annotations(payload: InvestigationPayload) -> Iterator[OntologyAnnotation]:
    """Every ontology annotation of a payload, in the order the reference mapping meets them."""
    for assay in payload.assays:
        yield from (a for a in (assay.measurement_type, assay.technology_type) if a is not None)
        if isinstance(assay.technology_platform, OntologyAnnotation):
            yield assay.technology_platform
    for study in payload.studies:
        yield from study.design_descriptors
    for contact in payload.contacts:
        yield from contact.roles
    yield from (p.status for p in payload.publications if p.status is not None)
    for table in payload.annotation_tables:
        for column in table.columns:
            if column.annotation is not None:
                yield column.annotation
            yield from (cell.annotation for cell in column.cells if cell.annotation is not None)


def ontology_sources(payload: InvestigationPayload) -> list[OntologySourceReference]:
    """Explicit references, then one per (term source, version) derived from the annotations, in order of use."""
    found = list(payload.ontology_source_references)
    seen = {(source.name, source.version) for source in found}
    for annotation in all_annotations(payload):
        name = term_source(annotation.uri)
        if name is not None and (name, annotation.version) not in seen:
            seen.add((name, annotation.version))
            found.append(OntologySourceReference(name=name, version=annotation.version))
    return found


def _ontology_sources(payload: InvestigationPayload, notes: _Notes) -> list[dict[str, str | None]]:
    """What the ontology-sources comment holds: nothing unless a source says more than its derivable name.

    Most payloads carry no version and no explicit reference: one cheap pass over the
    annotations finds that out before any accession is parsed.
    """
    versioned = [annotation for annotation in all_annotations(payload) if annotation.version is not None]
    if not versioned and not payload.ontology_source_references:
        return []
    for annotation in versioned:
        if term_source(annotation.uri) is None:
            notes.add(
                "unsourced-version",
                f"version '{annotation.version}' of term '{annotation.term}' left out: its URI "
                f"{annotation.uri!r} names no ontology to attach it to",
            )
    sources = ontology_sources(payload)
    if not payload.ontology_source_references and all(source.version is None for source in sources):
        return []
    return [source.model_dump() for source in sources]


def orcid_number(orcid: str | None) -> str | None:
    """The ``dddd-dddd-dddd-dddX`` part arctrl keeps of an ORCID (or URL), or ``None``."""
    match = ORCID.search(orcid) if orcid else None
    return match.group(0) if match else None


def _contact(contact: Contact, payload: InvestigationPayload, notes: _Notes) -> Contact | None:
    where = f"{contact.target_type} '{contact.target_ref or payload.identifier}'"
    update: dict[str, object] = {}
    comments = _named_comments(contact.comments, f"a contact on {where}", notes)
    if contact.orcid is not None and orcid_number(contact.orcid) is None:
        if contact.orcid.strip():
            notes.add("invalid-orcid", f"ORCID {contact.orcid!r} of a contact on {where} kept as a comment")
            comments = [*comments, Comment(name=INVALID_ORCID_COMMENT, value=contact.orcid)]
        update["orcid"] = None
    if comments != contact.comments:
        update["comments"] = comments
    if not (contact.first_name or "").strip() and not (contact.last_name or "").strip():
        if orcid_number(contact.orcid) is not None:
            notes.add("nameless-contact", f"contact on {where} has no name; written with an empty one (its ORCID)")
            update["first_name"] = ""
        else:
            stand_in = next(
                (value for value in (contact.email, contact.affiliation, contact.phone) if (value or "").strip()),
                None,
            )
            if stand_in is None:
                notes.add("dropped-contact", f"contact on {where} left out: no name, ORCID, e-mail or affiliation")
                return None
            notes.add("nameless-contact", f"contact on {where} has no name; {stand_in!r} is used as its given name")
            update["first_name"] = stand_in
    return contact.model_copy(update=update) if update else contact


def _publication(item: Publication, payload: InvestigationPayload, notes: _Notes) -> Publication | None:
    comments = _named_comments(item.comments, "a publication", notes)
    update: dict[str, object] = {"comments": comments} if comments != item.comments else {}
    if not (item.title or "").strip():
        where = f"{item.target_type} '{item.target_ref or payload.identifier}'"
        stand_in = next((value for value in (item.doi, item.pubmed_id) if (value or "").strip()), None)
        if stand_in is None:
            notes.add(
                "dropped-publication",
                f"publication on {where} left out: no title, DOI or PubMed ID (authors {item.authors!r})",
            )
            return None
        notes.add("untitled-publication", f"publication on {where} has no title; {stand_in!r} is used as its title")
        update["title"] = stand_in
    return item.model_copy(update=update) if update else item


def header_text(column: Column) -> str:
    """The header arctrl prints for a column that may appear once (``Output [Sample Name]``, ``Comment [x]``)."""
    if column.column_type == "comment":
        return f"Comment [{column.column_value}]"
    label = SINGLE_COLUMNS[column.column_type]
    if column.column_type in _DEFAULT_IO:
        return f"{label} [{_IO_LABELS[column.column_io_type or _DEFAULT_IO[column.column_type]]}]"
    return label


def _identity(column: Column) -> tuple[str, str | None] | None:
    """What arctrl compares to refuse a second column: the kind, a comment's name; ``None`` for term columns.

    A date column is written as the comment column ``arcstream:date``, so it counts as that comment.
    """
    kind = column.column_type
    if kind == "comment":
        return ("comment", column.column_value)
    if kind == "date":
        return ("comment", DATE_COMMENT)
    return (kind, None) if kind in SINGLE_COLUMNS else None


def repeated_column_name(header: str, occurrence: int) -> str:
    """Name of the comment column carrying the ``occurrence``-th (2, 3, ...) column with this header."""
    return f"{REPEATED_COLUMN_PREFIX}{header} #{occurrence}"


def _table(table: AnnotationTable, notes: _Notes) -> AnnotationTable:
    """A table whose repeated single-use columns become comment columns ``arcstream:<header> #<n>``."""
    seen: dict[tuple[str, str | None], int] = {}
    columns: list[Column] = []
    changed = False
    for column in table.columns:
        identity = _identity(column)
        if identity is None or identity not in seen:
            if identity is not None:
                seen[identity] = 1
            columns.append(column)
            continue
        seen[identity] += 1
        header = "Date" if column.column_type == "date" else header_text(column)
        name = repeated_column_name(header, seen[identity])
        notes.add(
            "repeated-column",
            f"{table.target_type} '{table.target_ref}' table '{table.table_name}' has {header} "
            f"{seen[identity]} times; arctrl takes it once, so this one is written as comment column '{name}'",
        )
        columns.append(Column(column_type="comment", column_value=name, cells=[_as_text(c) for c in column.cells]))
        changed = True
    return table.model_copy(update={"columns": columns}) if changed else table


def _as_text(cell: Cell) -> Cell:
    """A cell as free text: its value (else its annotation's term), an accession in angle brackets."""
    annotation = cell.annotation
    if annotation is None:
        return cell
    text = cell.value if cell.value is not None else annotation.term
    if annotation.uri:
        text = f"{text} <{annotation.uri}>"
    return Cell(row_index=cell.row_index, value=text)
