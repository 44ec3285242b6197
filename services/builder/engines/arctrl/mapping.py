"""Payload -> arctrl ``ARC``: everything the source relations say reaches the ARC.

The payload comes from :func:`services.builder.decisions.prepare`, which made
the decisions for real-data values (untitled investigations and publications,
nameless contacts and comments, invalid ORCIDs, repeated single-use columns)
and added the ``arcstream:`` comments for what arctrl's RO-Crate writer drops.
Decisions taken here (see docs/builder.md for the full list): study/assay
identifiers arctrl refuses are encoded reversibly
(:mod:`services.builder.identifiers`); a missing first name becomes an empty
given name (a known real-data quirk); everything arctrl would refuse or
silently merge, and every dangling reference, raises :class:`MappingError`
with the precise reason, which fails only this investigation.
"""

from __future__ import annotations

import orjson
from arctrl import ARC, ArcAssay, ArcInvestigation, ArcStudy, Comment, Person, Publication
from arctrl import OntologyAnnotation as ArcOntologyAnnotation
from arctrl.py.Core.ontology_source_reference import OntologySourceReference
from arctrl.py.license import License

from services.builder.decisions import ontology_sources
from services.builder.engines.arctrl.ontology import named, term, to_arctrl
from services.builder.engines.arctrl.tables import NodeNames, build_table
from services.builder.identifiers import ORIGINAL_IDENTIFIER_COMMENT, encode_identifier
from services.common.errors import MappingError
from services.common.payload import Comment as PayloadComment
from services.common.payload import Contact, InvestigationPayload, OntologyAnnotation
from services.common.payload import Publication as PayloadPublication

#: Assay comment listing the (arctrl) identifiers of the studies the assay is registered with.
REGISTERED_STUDIES_COMMENT = "arcstream:registered-studies"


def _identifier_map(identifiers: list[str], what: str) -> dict[str, str]:
    """Original -> arctrl identifier; duplicates and node-id collisions are errors."""
    mapping: dict[str, str] = {}
    node_ids: dict[str, str] = {}
    for original in identifiers:
        if original in mapping:
            raise MappingError(f"two {what} entries with identifier '{original}' (their other fields differ)")
        encoded = encode_identifier(original, f"a {what}")
        # arctrl derives process node ids from identifiers with spaces replaced by underscores.
        node_id = encoded.replace(" ", "_")
        if node_id in node_ids:
            raise MappingError(
                f"{what} identifiers '{original}' and '{node_ids[node_id]}' would share RO-Crate ids "
                f"('{encoded}' vs '{mapping[node_ids[node_id]]}')"
            )
        mapping[original] = encoded
        node_ids[node_id] = original
    return mapping


def _source_comments(comments: list[PayloadComment]) -> list[Comment]:
    return [Comment(name=comment.name, value=comment.value) for comment in comments]


def _comments(
    source: list[PayloadComment], original: str, encoded: str, studies: list[str] | None = None
) -> list[Comment] | None:
    """The source's comments, the original identifier of an encoded study/assay, an assay's study registrations.

    arctrl 3.2.3's RO-Crate writer drops the assay -> study registration, so it
    is also written as a comment holding a JSON array of study identifiers.
    """
    comments = _source_comments(source)
    if original != encoded:
        comments.append(Comment(name=ORIGINAL_IDENTIFIER_COMMENT, value=original))
    if studies:
        comments.append(Comment(name=REGISTERED_STUDIES_COMMENT, value=orjson.dumps(studies).decode()))
    return comments or None


def _person(contact: Contact, where: str) -> Person:
    if not (contact.first_name or "").strip() and not (contact.last_name or "").strip() and contact.orcid is None:
        raise MappingError(f"contact on {where} has neither first nor last name")
    return Person(
        orcid=contact.orcid,
        last_name=contact.last_name,
        first_name=contact.first_name or "",
        mid_initials=contact.mid_initials,
        email=contact.email,
        phone=contact.phone,
        fax=contact.fax,
        address=contact.postal_address,
        affiliation=contact.affiliation,
        roles=[term(role) for role in contact.roles],
        comments=_source_comments(contact.comments) or None,
    )


def _publication(publication: PayloadPublication, where: str) -> Publication:
    if not (publication.title or "").strip():
        raise MappingError(
            f"publication on {where} has no title (doi={publication.doi}, pubmed={publication.pubmed_id})"
        )
    return Publication(
        pub_med_id=publication.pubmed_id,
        doi=publication.doi,
        authors=publication.authors,
        title=publication.title,
        status=to_arctrl(publication.status),
        comments=_source_comments(publication.comments) or None,
    )


def _source_references(payload: InvestigationPayload) -> list[OntologySourceReference]:
    """The explicit references, then one per (term source, version) met, so versions are kept in the model."""
    return [
        OntologySourceReference(
            name=source.name, file=source.file, version=source.version, description=source.description
        )
        for source in ontology_sources(payload)
    ]


def _platform(platform: str | OntologyAnnotation | None) -> ArcOntologyAnnotation | None:
    """The technology platform: a name (contract v1) or an ontology annotation (v2); empty means none."""
    if isinstance(platform, OntologyAnnotation):
        return term(platform)
    return named(platform) if platform else None


def build_arc(payload: InvestigationPayload) -> ARC:
    """The arctrl ARC for a prepared payload; raises :class:`MappingError` for what it cannot take."""
    if not payload.identifier.strip():
        raise MappingError("investigation has an empty identifier")
    if not (payload.title or "").strip():
        raise MappingError("investigation has no title (arctrl cannot write an RO-Crate without one)")
    study_ids = _identifier_map([s.identifier for s in payload.studies], "study")
    assay_ids = _identifier_map([a.identifier for a in payload.assays], "assay")

    investigation = ArcInvestigation.create(
        identifier=payload.identifier,
        title=payload.title,
        description=payload.description_text,
        submission_date=payload.submission_date,
        public_release_date=payload.public_release_date,
        ontology_source_references=_source_references(payload),
        comments=_source_comments(payload.comments) or None,
    )
    license = None if payload.license is None else License(content_type="fulltext", content=payload.license)
    arc = ARC.from_arc_investigation(investigation, license=license)
    studies: dict[str, ArcStudy] = {}
    for study in payload.studies:
        encoded = study_ids[study.identifier]
        studies[study.identifier] = ArcStudy.create(
            identifier=encoded,
            title=study.title,
            description=study.description_text,
            submission_date=study.submission_date,
            public_release_date=study.public_release_date,
            study_design_descriptors=[term(d) for d in study.design_descriptors] or None,
            comments=_comments(study.comments, study.identifier, encoded),
        )
        arc.AddRegisteredStudy(studies[study.identifier])
    assays: dict[str, ArcAssay] = {}
    for assay in payload.assays:
        encoded = assay_ids[assay.identifier]
        for ref in assay.study_refs:
            if ref not in studies:
                raise MappingError(f"assay '{assay.identifier}' refers to unknown study '{ref}'")
        registered = [study_ids[ref] for ref in assay.study_refs]
        assays[assay.identifier] = ArcAssay.create(
            identifier=encoded,
            title=assay.title,
            description=assay.description_text,
            measurement_type=to_arctrl(assay.measurement_type),
            technology_type=to_arctrl(assay.technology_type),
            technology_platform=_platform(assay.technology_platform),
            comments=_comments(assay.comments, assay.identifier, encoded, registered),
        )
        arc.AddAssay(assays[assay.identifier])
        for ref in assay.study_refs:
            studies[ref].RegisterAssay(encoded)

    for contact in payload.contacts:
        where = f"{contact.target_type} '{contact.target_ref or payload.identifier}'"
        person = _person(contact, where)
        if contact.target_type == "investigation":
            arc.Contacts.append(person)
        elif contact.target_type == "study":
            _target(studies, contact.target_ref, "contact", "study").Contacts.append(person)
        else:
            _target(assays, contact.target_ref, "contact", "assay").Performers.append(person)

    for publication in payload.publications:
        where = f"{publication.target_type} '{publication.target_ref or payload.identifier}'"
        item = _publication(publication, where)
        if publication.target_type == "investigation":
            arc.Publications.append(item)
        else:
            _target(studies, publication.target_ref, "publication", "study").Publications.append(item)

    _add_tables(payload, studies, assays)
    return arc


def _target[T](targets: dict[str, T], ref: str | None, what: str, kind: str) -> T:
    if ref is None or ref not in targets:
        raise MappingError(f"{what} refers to unknown {kind} '{ref}'")
    return targets[ref]


def _add_tables(payload: InvestigationPayload, studies: dict[str, ArcStudy], assays: dict[str, ArcAssay]) -> None:
    nodes = NodeNames()
    names: dict[tuple[str, str], dict[str, str]] = {}
    for table in payload.annotation_tables:
        owner: ArcStudy | ArcAssay = (
            _target(studies, table.target_ref, "annotation table", "study")
            if table.target_type == "study"
            else _target(assays, table.target_ref, "annotation table", "assay")
        )
        seen = names.setdefault((table.target_type, table.target_ref), {})
        node_name = table.table_name.replace(" ", "_")
        if node_name in seen:
            raise MappingError(
                f"{table.target_type} '{table.target_ref}' has tables '{table.table_name}' and "
                f"'{seen[node_name]}' (duplicate names, or names arctrl turns into the same RO-Crate id)"
            )
        seen[node_name] = table.table_name
        owner.AddTable(build_table(table, nodes))
