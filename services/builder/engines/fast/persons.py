"""Contacts, performers and publications as arctrl writes them.

Person ids are the ORCID URL when the person has an ORCID, else
``#Person_<given>_<family>`` with spaces replaced, so two contacts with the
same names are one node (merged in the graph, as in arctrl). A contact without
an ORCID takes the ORCID of the first person with the same first and last name
in arctrl's ``GetAllPersons`` order (assay performers, study contacts,
investigation contacts) - which may be the contact itself, without one
(:class:`OrcidLookup`).
"""

from __future__ import annotations

from services.builder.decisions import orcid_number
from services.builder.engines.fast.graph import Node, put
from services.builder.engines.fast.terms import annotation_term, comment, comment_text
from services.common.payload import Contact, InvestigationPayload, Publication

#: Identifier property ids arctrl gives publication DOIs and PubMed ids.
DOI_PROPERTY = "http://purl.obolibrary.org/obo/OBI_0002110"
PUBMED_PROPERTY = "http://purl.obolibrary.org/obo/OBI_0001617"
ORCID_URL = "http://orcid.org/"


class OrcidLookup:
    """arctrl's ORCID for a contact: its own, else that of the first same-named person in ``GetAllPersons``."""

    def __init__(self, payload: InvestigationPayload) -> None:
        self._by_name: dict[tuple[str, str | None], str | None] = {}
        if not any(contact.orcid for contact in payload.contacts):
            return
        owners = (
            *(("assay", assay.identifier) for assay in payload.assays),
            *(("study", study.identifier) for study in payload.studies),
        )
        ordered = [
            contact
            for kind, identifier in owners
            for contact in payload.contacts
            if contact.target_type == kind and contact.target_ref == identifier
        ]
        ordered += [contact for contact in payload.contacts if contact.target_type == "investigation"]
        for contact in ordered:
            self._by_name.setdefault((contact.first_name or "", contact.last_name), orcid_number(contact.orcid))

    def orcid(self, contact: Contact) -> str | None:
        own = orcid_number(contact.orcid)
        return own if own is not None else self._by_name.get((contact.first_name or "", contact.last_name))


def person(contact: Contact, orcids: OrcidLookup) -> Node:
    """``PersonConversion.composePerson`` for a payload contact (missing first name -> "")."""
    given = contact.first_name or ""
    family = contact.last_name
    orcid = orcids.orcid(contact)
    if orcid is not None:
        ident = ORCID_URL + orcid
    else:
        ident = (f"#Person_{given}" if family is None else f"#Person_{given}_{family}").replace(" ", "_")
    node: Node = {"@id": ident, "@type": "Person", "givenName": given}
    if contact.affiliation is not None:
        organization: Node = {
            "@id": f"#Organization_{contact.affiliation}".replace(" ", "_"),
            "@type": "Organization",
            "name": contact.affiliation,
        }
        node["affiliation"] = organization
    put(node, "email", contact.email)
    put(node, "familyName", family)
    if contact.roles:
        node["jobTitle"] = [annotation_term(role) for role in contact.roles]
    put(node, "additionalName", contact.mid_initials)
    put(node, "address", contact.postal_address)
    if contact.comments:
        node["disambiguatingDescription"] = [comment_text(c.name or "", c.value) for c in contact.comments]
    put(node, "faxNumber", contact.fax)
    put(node, "telephone", contact.phone)
    return node


def performer(name: str) -> Node:
    """A table's performer cell: a person with only a given name."""
    return {"@id": f"#Person_{name}".replace(" ", "_"), "@type": "Person", "givenName": name}


def _identifier(name: str, value: str, property_id: str) -> Node:
    return {"@id": value, "@type": "PropertyValue", "name": name, "value": value, "propertyID": property_id}


def publication(item: Publication) -> Node:
    """``ScholarlyArticleConversion.composeScholarlyArticle``; authors split on commas, ids keep spaces."""
    title = item.title or ""
    node: Node = {"@id": f"#{title}".replace(" ", "_"), "@type": "ScholarlyArticle", "headline": title}
    identifiers: list[Node] = []
    if item.doi:
        identifiers.append(_identifier("DOI", item.doi, DOI_PROPERTY))
    if item.pubmed_id:
        identifiers.append(_identifier("PubMedID", item.pubmed_id, PUBMED_PROPERTY))
    node["identifier"] = identifiers
    if item.authors is not None:
        node["author"] = [
            {"@id": f"#Author_{author}", "@type": "Person", "givenName": author} for author in item.authors.split(",")
        ]
    if item.status is not None:
        node["creativeWorkStatus"] = annotation_term(item.status)
    if item.comments:
        node["comment"] = [comment(c.name or "", c.value) for c in item.comments]
    return node
