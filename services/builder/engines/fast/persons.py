"""Contacts, performers and publications as arctrl writes them.

Person ids are ``#Person_<given>_<family>`` with spaces replaced, so two
contacts with the same names are one node (merged in the graph, as in arctrl).
No payload carries an ORCID, so arctrl's per-study / per-assay person lookup
(which only fills in ORCIDs) never changes the output and is skipped here.
"""

from __future__ import annotations

from services.builder.engines.fast.graph import Node, put
from services.builder.engines.fast.terms import annotation_term
from services.common.payload import Contact, Publication

#: Identifier property ids arctrl gives publication DOIs and PubMed ids.
DOI_PROPERTY = "http://purl.obolibrary.org/obo/OBI_0002110"
PUBMED_PROPERTY = "http://purl.obolibrary.org/obo/OBI_0001617"


def person(contact: Contact) -> Node:
    """``PersonConversion.composePerson`` for a payload contact (missing first name -> "")."""
    given = contact.first_name or ""
    family = contact.last_name
    ident = f"#Person_{given}" if family is None else f"#Person_{given}_{family}"
    node: Node = {"@id": ident.replace(" ", "_"), "@type": "Person", "givenName": given}
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
    return node
